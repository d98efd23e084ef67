import { PAGE_SIZE } from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import { HmmErrno, PROT_READ } from "./constants.js";
import { hmmDmirrorCmd } from "./dmirror.js";
import { HmmInputError } from "./errors.js";
import { FOLL_LONGTERM, FOLL_WRITE, getUserPages, putUserPages } from "./gup.js";
import { PteKind } from "./pte.js";
import { hmmRig } from "./test-fixtures.js";

describe("get_user_pages", () => {
  it("faults in what it cannot follow and takes a reference per page, which putUserPages drops", () => {
    const { mm, sys } = hmmRig();
    const a = mm.mmap(4 * PAGE_SIZE);
    mm.write(a + PAGE_SIZE, new Uint8Array([5]));
    expect(mm.read(a + 2 * PAGE_SIZE, 1)[0]).toBe(0); // page 2: the zero page
    const pages = new Uint32Array(4);
    expect(getUserPages(mm, a, 4, 0, pages)).toBe(4);
    expect(mm.pteAt(a)?.kind).toBe(PteKind.ZERO); // a read maps the zero page, as the CPU would
    expect(pages[2]).toBe(sys.zeroPfn);
    expect(sys.refCount(pages[1] ?? 0)).toBe(2);
    // FOLL_WRITE replaces the zero page by a page of this mm.
    const w = new Uint32Array(1);
    expect(getUserPages(mm, a + 2 * PAGE_SIZE, 1, FOLL_WRITE | FOLL_LONGTERM, w)).toBe(1);
    expect(mm.pteAt(a + 2 * PAGE_SIZE)).toMatchObject({ kind: PteKind.PRESENT, write: true });
    expect(w[0]).not.toBe(sys.zeroPfn);
    putUserPages(mm, pages, 4);
    putUserPages(mm, w, 1);
    expect(sys.refCount(pages[1] ?? 0)).toBe(1);
    expect(sys.refCount(w[0] ?? 0)).toBe(1);
  });

  it("with FOLL_WRITE breaks COW in the caller's mm after fork, leaving the child's page alone", () => {
    const { mm } = hmmRig();
    const a = mm.mmap(PAGE_SIZE);
    mm.write(a, new Uint8Array([1, 2, 3]));
    const child = mm.fork();
    const shared = mm.pteAt(a)?.pfn;
    expect(child.pteAt(a)?.pfn).toBe(shared);
    const p = new Uint32Array(1);
    expect(getUserPages(mm, a, 1, FOLL_WRITE, p)).toBe(1);
    expect(p[0]).not.toBe(shared);
    expect(child.pteAt(a)?.pfn).toBe(shared);
    expect([...mm.read(a, 3)]).toEqual([1, 2, 3]);
    putUserPages(mm, p, 1);
    child.exit();
  });

  it("brings device-private pages back to system memory", () => {
    const { mm, open } = hmmRig();
    const d = open();
    const a = mm.mmap(2 * PAGE_SIZE);
    mm.write(a, new Uint8Array(2 * PAGE_SIZE).fill(9));
    expect(d.migrateToDev(hmmDmirrorCmd(a, 2))).toBe(0);
    expect(mm.pteAt(a)?.kind).toBe(PteKind.DEVICE_PRIVATE);
    const p = new Uint32Array(2);
    expect(getUserPages(mm, a, 2, 0, p)).toBe(2);
    expect(mm.pteAt(a)?.kind).toBe(PteKind.PRESENT);
    expect(mm.pteAt(a + PAGE_SIZE)?.kind).toBe(PteKind.PRESENT);
    expect(mm.read(a, 2 * PAGE_SIZE).every((b) => b === 9)).toBe(true);
    putUserPages(mm, p, 2);
  });

  it("returns -EFAULT for VM_PFNMAP, holes and accesses the VMA forbids; the pages got before a failure otherwise", () => {
    const { mm, sys } = hmmRig();
    const io = mm.mmap(PAGE_SIZE, { pfnmapPhys: 0x10000000 });
    expect(getUserPages(mm, io, 1, 0)).toBe(-HmmErrno.EFAULT);
    const ro = mm.mmap(2 * PAGE_SIZE, { prot: PROT_READ });
    expect(getUserPages(mm, ro, 1, FOLL_WRITE)).toBe(-HmmErrno.EFAULT);
    expect(mm.pteAt(ro)?.kind).toBe(PteKind.NONE);
    const a = mm.mmap(2 * PAGE_SIZE);
    mm.munmap(a + PAGE_SIZE, PAGE_SIZE);
    const used = sys.pagesInUse;
    const p = new Uint32Array(2);
    expect(getUserPages(mm, a, 2, FOLL_WRITE, p)).toBe(1); // page 1 is a hole: one page got
    expect(sys.pagesInUse).toBe(used + 1);
    putUserPages(mm, p, 1);
    expect(mm.mmapLocked).toBe(false);
  });

  it("refuses malformed arguments with a typed error naming them, taking nothing", () => {
    const { mm } = hmmRig();
    const a = mm.mmap(PAGE_SIZE);
    expect(() => getUserPages(mm, a + 1, 1, 0)).toThrow(HmmInputError);
    expect(() => getUserPages(mm, a, -1, 0)).toThrow(/nrPages/);
    expect(() => getUserPages(mm, a, 1, 0x2)).toThrow(/gupFlags/);
    expect(() => getUserPages(mm, a, 2, 0, new Uint32Array(1))).toThrow(/pages/);
    expect(mm.pteAt(a)?.kind).toBe(PteKind.NONE);
  });
});
