import { PAGE_SIZE } from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import { HmmErrno } from "./constants.js";
import { hmmDmirrorCmd } from "./dmirror.js";
import { MADV_FREE } from "./mm.js";
import { PteKind } from "./pte.js";
import { hmmRig } from "./test-fixtures.js";

// MADV_FREE (madvise_free_single_vma): lazily freeable private anonymous pages.

describe("madvise(MADV_FREE)", () => {
  it("reclaim discards a page not written since, without swapping it", () => {
    const { mm, sys } = hmmRig();
    const a = mm.mmap(2 * PAGE_SIZE);
    mm.write(a, new Uint8Array([1]));
    mm.write(a + PAGE_SIZE, new Uint8Array([2]));
    expect(mm.madvise(a, 2 * PAGE_SIZE, MADV_FREE)).toBe(0);
    expect(mm.pteAt(a)?.kind).toBe(PteKind.PRESENT);
    expect(sys.lazyFree(mm.pteAt(a)?.pfn ?? 0)).toBe(true);
    // Page 1 is written again: it is needed and is swapped out as usual.
    mm.write(a + PAGE_SIZE, new Uint8Array([3]));
    const inUse = sys.pagesInUse;
    expect(mm.swapOut(a)).toBe(0);
    expect(mm.swapOut(a + PAGE_SIZE)).toBe(0);
    expect(mm.pteAt(a)?.kind).toBe(PteKind.NONE);
    expect(mm.pteAt(a + PAGE_SIZE)?.kind).toBe(PteKind.SWAP);
    expect(sys.swapSlotsInUse).toBe(1);
    expect(sys.pagesInUse).toBe(inUse - 2);
    expect(mm.read(a, 1)[0]).toBe(0);
    expect(mm.read(a + PAGE_SIZE, 1)[0]).toBe(3);
  });

  it("drops swap entries, fires CLEAR to mirrors, and refuses shared and file mappings", () => {
    const { mm, sys, open } = hmmRig();
    const d = open();
    const a = mm.mmap(2 * PAGE_SIZE);
    mm.write(a, new Uint8Array([7]));
    mm.write(a + PAGE_SIZE, new Uint8Array([8]));
    expect(mm.swapOut(a + PAGE_SIZE)).toBe(0);
    expect(d.read(hmmDmirrorCmd(a, 1))).toBe(0);
    expect(d.liveTranslations(a, a + PAGE_SIZE)).toBe(1);
    expect(mm.madvise(a, 2 * PAGE_SIZE, MADV_FREE)).toBe(0);
    expect(d.liveTranslations(a, a + PAGE_SIZE)).toBe(0);
    expect(mm.pteAt(a + PAGE_SIZE)?.kind).toBe(PteKind.NONE);
    expect(sys.swapSlotsInUse).toBe(0);
    // Until reclaim, a lazily freed page keeps its bytes.
    expect(mm.read(a, 1)[0]).toBe(7);
    const shared = mm.mmap(PAGE_SIZE, { shared: true });
    expect(mm.madvise(shared, PAGE_SIZE, MADV_FREE)).toBe(-HmmErrno.EINVAL);
  });
});
