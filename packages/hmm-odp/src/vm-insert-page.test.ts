import { PAGE_SIZE } from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import { HmmErrno, PROT_READ, VM_MIXEDMAP } from "./constants.js";
import { PteKind } from "./pte.js";
import { hmmRig } from "./test-fixtures.js";

// vm_insert_page and the dmirror file mmap built on it (the mixedmap test of hmm-tests.c uses them).

describe("vm_insert_page / dmirror mmap", () => {
  it("maps driver pages read-only in a private mapping; a CPU write copies the page, munmap frees both", () => {
    const { mm, sys, open } = hmmRig();
    const d = open();
    const before = sys.pagesInUse;
    const ptr = d.mmap(2 * PAGE_SIZE);
    expect(sys.pagesInUse).toBe(before + 2);
    const pte = mm.pteAt(ptr);
    expect(pte?.kind).toBe(PteKind.PRESENT);
    expect(pte?.write).toBe(false);
    const driverPage = pte?.pfn ?? 0;
    expect(sys.refCount(driverPage)).toBe(1); // the mapping's reference only
    expect([...mm.read(ptr, 8)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    mm.write(ptr, new Uint8Array([7, 8, 9]));
    const after = mm.pteAt(ptr);
    expect(after?.write).toBe(true);
    expect(after?.pfn).not.toBe(driverPage); // wp_page_copy: not anonymous, so never reused in place
    expect([...mm.read(ptr, 3)]).toEqual([7, 8, 9]);
    expect(sys.refCount(driverPage)).toBe(0);
    mm.munmap(ptr, 2 * PAGE_SIZE);
    expect(sys.pagesInUse).toBe(before);
  });

  it("refuses an entry in use (-EBUSY), a frame the mm does not hand out and a hole (-EINVAL), changing nothing", () => {
    const { mm, sys, open } = hmmRig();
    const d = open();
    const ptr = d.mmap(PAGE_SIZE, PROT_READ);
    expect((mm.findVma(ptr)?.flags ?? 0) & VM_MIXEDMAP).toBe(VM_MIXEDMAP);
    const pfn = sys.allocPage();
    const used = sys.pagesInUse;
    expect(mm.vmInsertPage(ptr, pfn)).toBe(-HmmErrno.EBUSY);
    const anon = mm.mmap(PAGE_SIZE);
    expect(mm.vmInsertPage(anon, 0x12345)).toBe(-HmmErrno.EINVAL);
    expect(mm.vmInsertPage(anon + 64 * PAGE_SIZE * 1024, pfn)).toBe(-HmmErrno.EINVAL);
    expect(sys.refCount(pfn)).toBe(1);
    expect(sys.pagesInUse).toBe(used);
    expect(mm.pteAt(anon)?.kind).toBe(PteKind.NONE);
    expect((mm.findVma(anon)?.flags ?? 0) & VM_MIXEDMAP).toBe(0);
  });
});
