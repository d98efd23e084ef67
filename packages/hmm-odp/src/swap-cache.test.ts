import { PAGE_SIZE, pfnToPhys } from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import { PteKind } from "./pte.js";
import { hmmRig } from "./test-fixtures.js";

// The swap cache: a page read in from swap keeps its slot until it is written, freed, or reclaimed.

describe("swap cache", () => {
  it("a read fault keeps the slot and maps the page writable but clean; reclaim then drops it without writing", () => {
    const { mm, sys } = hmmRig();
    const a = mm.mmap(PAGE_SIZE);
    mm.write(a, new Uint8Array([1, 2, 3]));
    expect(mm.swapOut(a)).toBe(0);
    const slot = mm.pteAt(a)?.pfn;
    expect(sys.swapSlotsInUse).toBe(1);
    expect([...mm.read(a, 3)]).toEqual([1, 2, 3]);
    const pte = mm.pteAt(a);
    expect(pte).toMatchObject({ kind: PteKind.PRESENT, write: true });
    expect(sys.inSwapCache(pte?.pfn ?? 0)).toBe(true);
    expect(sys.swapSlotsInUse).toBe(1);
    expect(mm.swapOut(a)).toBe(0);
    expect(mm.pteAt(a)?.pfn).toBe(slot); // the same slot: nothing was written
    expect(sys.swapSlotsInUse).toBe(1);
    expect([...mm.read(a, 3)]).toEqual([1, 2, 3]);
  });

  it("a store through the writable clean pte dirties it, and reclaim writes the page again", () => {
    const { mm } = hmmRig();
    const a = mm.mmap(PAGE_SIZE);
    mm.write(a, new Uint8Array([1]));
    mm.swapOut(a);
    mm.read(a, 1);
    mm.write(a, new Uint8Array([9])); // no fault: the pte was writable
    mm.swapOut(a);
    expect([...mm.read(a, 1)]).toEqual([9]);
  });

  it("a write fault frees the slot; set_page_dirty makes reclaim write a page written behind the pte's back", () => {
    const { mm, sys } = hmmRig();
    const a = mm.mmap(2 * PAGE_SIZE);
    mm.write(a, new Uint8Array(2 * PAGE_SIZE).fill(4));
    mm.swapOut(a);
    mm.swapOut(a + PAGE_SIZE);
    mm.write(a, new Uint8Array([5]));
    expect(sys.inSwapCache(mm.pteAt(a)?.pfn ?? 0)).toBe(false);
    expect(sys.swapSlotsInUse).toBe(1);
    mm.read(a + PAGE_SIZE, 1);
    const pfn = mm.pteAt(a + PAGE_SIZE)?.pfn ?? 0;
    sys.memory.write(pfnToPhys(pfn), new Uint8Array([6])); // a device's DMA write: no pte bit changes
    sys.setPageDirty(pfn);
    mm.swapOut(a + PAGE_SIZE);
    expect([...mm.read(a + PAGE_SIZE, 2)]).toEqual([6, 4]);
  });

  it("unmapping and exit free the slots of swap-cache pages", () => {
    const { mm, sys } = hmmRig();
    const a = mm.mmap(4 * PAGE_SIZE);
    mm.write(a, new Uint8Array(4 * PAGE_SIZE).fill(1));
    for (let i = 0; i < 4; i++) mm.swapOut(a + i * PAGE_SIZE);
    mm.read(a, 4 * PAGE_SIZE);
    expect(sys.swapSlotsInUse).toBe(4);
    mm.munmap(a, PAGE_SIZE);
    expect(sys.swapSlotsInUse).toBe(3);
    mm.exit();
    expect(sys.swapSlotsInUse).toBe(0);
  });
});
