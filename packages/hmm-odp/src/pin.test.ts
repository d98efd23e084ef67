import { describe, expect, it } from "vitest";
import { PAGE_SIZE, pfnToPhys } from "@dmasim/memory";
import { hmmRig } from "./test-fixtures.js";

describe("pinned pages at fork (page_maybe_dma_pinned)", () => {
  it("a DMA-pinned private page is copied for the child; the parent keeps the pinned page, writable", () => {
    const { mm, sys } = hmmRig();
    const a = mm.mmap(2 * PAGE_SIZE);
    mm.write(a, new Uint8Array([1, 2, 3]));
    mm.write(a + PAGE_SIZE, new Uint8Array([4]));
    const pinned = mm.pteAt(a)?.pfn ?? 0;
    sys.pinPage(pinned);
    expect(sys.maybeDmaPinned(pinned)).toBe(true);
    expect(sys.refCount(pinned)).toBe(2);
    const child = mm.fork();
    expect(mm.pteAt(a)).toMatchObject({ pfn: pinned, write: true });
    expect(child.pteAt(a)?.pfn).not.toBe(pinned);
    // The unpinned page is shared copy-on-write as before.
    expect(child.pteAt(a + PAGE_SIZE)?.pfn).toBe(mm.pteAt(a + PAGE_SIZE)?.pfn);
    expect(mm.pteAt(a + PAGE_SIZE)?.write).toBe(false);
    // A CPU write in the parent lands in the pinned page, which the child no longer sees.
    mm.write(a, new Uint8Array([9]));
    expect(mm.pteAt(a)?.pfn).toBe(pinned);
    expect(sys.memory.read(pfnToPhys(pinned), 3)).toEqual(new Uint8Array([9, 2, 3]));
    expect(child.read(a, 3)).toEqual(new Uint8Array([1, 2, 3]));
    child.exit();
    sys.unpinPage(pinned);
    expect(sys.maybeDmaPinned(pinned)).toBe(false);
    mm.exit();
    expect(sys.pagesInUse).toBe(0);
  });
});
