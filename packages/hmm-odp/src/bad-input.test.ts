import { PAGE_SIZE } from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import { HmmErrno, PROT_READ } from "./constants.js";
import { hmmDmirrorCmd } from "./dmirror.js";
import { HmmInputError, HmmStateError } from "./errors.js";
import { MigrateVma, migrateVmaSetup, MIGRATE_VMA_SELECT_SYSTEM } from "./migrate.js";
import { MREMAP_DONTUNMAP } from "./mm.js";
import { PteKind } from "./pte.js";
import { hmmRig } from "./test-fixtures.js";

describe("bad input and refusals", () => {
  it("mm operations refuse unaligned or overflowing ranges and unknown flags, naming the argument, and change nothing", () => {
    const { mm } = hmmRig();
    const a = mm.mmap(4 * PAGE_SIZE);
    mm.write(a, new Uint8Array([1]));
    const before = mm.vmas.length;
    expect(() => mm.mmap(0)).toThrow(HmmInputError);
    expect(() => mm.mmap(PAGE_SIZE, { prot: 8 })).toThrow(HmmInputError);
    expect(() => mm.mprotect(a + 1, PAGE_SIZE, PROT_READ)).toThrow(HmmInputError);
    expect(() => mm.mprotect(a, PAGE_SIZE, 4)).toThrow(HmmInputError);
    expect(() => mm.madvise(a, PAGE_SIZE, 99)).toThrow(HmmInputError);
    expect(() => mm.mremap(a, 2 ** 48, PAGE_SIZE)).toThrow(HmmInputError);
    expect(() => mm.mremap(a, 4 * PAGE_SIZE, 4 * PAGE_SIZE, undefined, 1)).toThrow(HmmInputError);
    // MREMAP_DONTUNMAP may not change the length, nor move a VM_PFNMAP mapping (-EINVAL, nothing moved).
    expect(mm.mremap(a, 4 * PAGE_SIZE, 8 * PAGE_SIZE, undefined, MREMAP_DONTUNMAP)).toBe(-HmmErrno.EINVAL);
    const io = mm.mmap(PAGE_SIZE, { pfnmapPhys: 0x100000 });
    expect(mm.mremap(io, PAGE_SIZE, PAGE_SIZE, undefined, MREMAP_DONTUNMAP)).toBe(-HmmErrno.EINVAL);
    expect(mm.findVma(io)?.start).toBe(io);
    expect(mm.munmap(io, PAGE_SIZE)).toBe(0);
    expect(() => mm.read(a, -1)).toThrow(HmmInputError);
    expect(mm.munmap(a + 1, PAGE_SIZE)).toBe(-HmmErrno.EINVAL);
    expect(mm.vmas.length).toBe(before);
    expect(mm.read(a, 1)).toEqual(new Uint8Array([1]));
    try {
      mm.mprotect(a, PAGE_SIZE, 4);
    } catch (e) {
      expect((e as HmmInputError).argument).toBe("prot");
      expect((e as HmmInputError).code).toBe("EINVAL");
    }
  });

  it("a CPU access outside any mapping is a typed EFAULT; mprotect over a hole is -ENOMEM", () => {
    const { mm } = hmmRig();
    const a = mm.mmap(PAGE_SIZE);
    mm.munmap(a, PAGE_SIZE);
    expect(() => mm.read(a, 1)).toThrow(HmmStateError);
    expect(mm.mprotect(a, PAGE_SIZE, PROT_READ)).toBe(-HmmErrno.ENOMEM);
  });

  it("migrate_vma_setup: -EINVAL for a missing VMA or a range outside it", () => {
    const { mm } = hmmRig();
    const a = mm.mmap(2 * PAGE_SIZE);
    const outside = new MigrateVma({ mm, vma: mm.findVma(a), start: a, end: a + 4 * PAGE_SIZE, pgmapOwner: undefined, flags: MIGRATE_VMA_SELECT_SYSTEM });
    expect(migrateVmaSetup(outside)).toBe(-HmmErrno.EINVAL);
    const none = new MigrateVma({ mm, vma: undefined, start: a, end: a + PAGE_SIZE, pgmapOwner: undefined, flags: MIGRATE_VMA_SELECT_SYSTEM });
    expect(migrateVmaSetup(none)).toBe(-HmmErrno.EINVAL);
  });

  it("dmirror commands refuse an unaligned address, a short buffer and an unknown ioctl", () => {
    const { mm, open } = hmmRig();
    const d = open();
    const a = mm.mmap(PAGE_SIZE);
    expect(() => d.read(hmmDmirrorCmd(a + 1, 1))).toThrow(HmmInputError);
    expect(() => d.read({ addr: a, ptr: new Uint8Array(10), npages: 1, cpages: 0, faults: 0 })).toThrow(HmmInputError);
    expect(() => d.ioctl(42, hmmDmirrorCmd(a, 1))).toThrow(HmmInputError);
    expect(d.liveTranslations(0, 2 ** 47)).toBe(0);
  });

  it("a mirror of an exited process fails its commands with -EINVAL", () => {
    const { mm, open } = hmmRig();
    const d = open();
    const a = mm.mmap(PAGE_SIZE);
    mm.exit();
    expect(d.read(hmmDmirrorCmd(a, 1))).toBe(-HmmErrno.EINVAL);
  });

  it("the OOM reaper's non-blockable CLEAR is refused with -EAGAIN while a mirror holds its lock, and nothing changes", () => {
    const { mm, open } = hmmRig();
    const d = open();
    const a = mm.mmap(PAGE_SIZE);
    mm.write(a, new Uint8Array([5]));
    d.mutex.lock();
    expect(mm.oomReap(a, PAGE_SIZE)).toBe(-HmmErrno.EAGAIN);
    expect(mm.pteAt(a)?.kind).toBe(PteKind.PRESENT);
    d.mutex.unlock();
    expect(mm.oomReap(a, PAGE_SIZE)).toBe(0);
    expect(mm.pteAt(a)?.kind).toBe(PteKind.NONE);
  });
});

describe("a device fault on a page whose migration never ends", () => {
  it("waits in virtual time and gives up with -EBUSY at HMM_RANGE_DEFAULT_TIMEOUT", () => {
    const { mm, open, kernel } = hmmRig();
    const d = open();
    const a = mm.mmap(PAGE_SIZE);
    mm.write(a, new Uint8Array([1]));
    let ret = 0;
    const t0 = kernel.trace.clock.now;
    expect(
      mm.migratePage(a, () => {
        ret = d.read(hmmDmirrorCmd(a, 1));
      }),
    ).toBe(0);
    expect(ret).toBe(-HmmErrno.EBUSY);
    expect(kernel.trace.clock.now - t0).toBeGreaterThanOrEqual(1e9);
    expect(d.read(hmmDmirrorCmd(a, 1))).toBe(0);
  });
});
