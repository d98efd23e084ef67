import { PAGE_SIZE } from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import { HMM_PFN_REQ_FAULT, HMM_PFN_VALID, HMM_PFN_WRITE, HmmErrno } from "./constants.js";
import { HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL, HMM_DMIRROR_PROT_WRITE, hmmDmirrorCmd } from "./dmirror.js";
import { FOLL_LONGTERM, FOLL_WRITE, getUserPages, putUserPages } from "./gup.js";
import { HmmStateError } from "./errors.js";
import { HmmRange, hmmRangeFault } from "./hmm.js";
import type { Mm } from "./mm.js";
import { MmuIntervalNotifier, mmuIntervalNotifierInsert, mmuIntervalReadBegin, mmuIntervalSetSeq } from "./notifier.js";
import { MemoryType, memunmapPages } from "./pagemap.js";
import { PteKind } from "./pte.js";
import { cpuFillInts, cpuInts, firstMismatch, hmmRig, ints } from "./test-fixtures.js";

// MEMORY_DEVICE_COHERENT: device pages the CPU maps with ordinary present ptes (model-level checks beside
// the hmm-tests.c coherent variants).

const N = 8;

/** A coherent rig with N pages holding 0, 1, 2, ... migrated to device 0's coherent memory. */
function onDevice() {
  const rig = hmmRig({ coherent: true });
  const { mm, open, mdev0 } = rig;
  const d = open();
  const ptr = mm.mmap(N * PAGE_SIZE);
  cpuFillInts(mm, ptr, N * PAGE_SIZE, (i) => i);
  const cmd = hmmDmirrorCmd(ptr, N);
  expect(d.migrateToDev(cmd)).toBe(0);
  expect(cmd.cpages).toBe(N);
  expect(mdev0.pagemap.allocatedPages).toBe(N);
  return { ...rig, d, ptr };
}

function inPagemap(rig: ReturnType<typeof onDevice>, pfn: number): boolean {
  const p = rig.mdev0.pagemap;
  return pfn >= p.startPfn && pfn < p.startPfn + p.nrPages;
}

function notifier(mm: Mm): MmuIntervalNotifier {
  const sub = new MmuIntervalNotifier();
  mmuIntervalNotifierInsert(sub, mm, 0, 2 ** 47, { invalidate: (s, _r, seq) => (mmuIntervalSetSeq(s, seq), true) });
  return sub;
}

describe("coherent device memory (MEMORY_DEVICE_COHERENT)", () => {
  it("is RAM carved out for the device: memremap takes it from the allocator, memunmap gives it back", () => {
    const rig = hmmRig({ coherent: true });
    const p = rig.mdev0.pagemap;
    expect(p.type).toBe(MemoryType.DEVICE_COHERENT);
    expect(p.coherent).toBe(true);
    const free = rig.sys.memory.allocator.freeBytes;
    memunmapPages(p);
    expect(rig.sys.memory.allocator.freeBytes).toBe(free + p.nrPages * PAGE_SIZE);
    expect(rig.sys.pagemapOf(p.startPfn)).toBeUndefined();
  });

  it("migrated pages get present ptes to the device pages, and CPU accesses do not fault them back", () => {
    const rig = onDevice();
    const { mm, ptr, sys, d, mdev0 } = rig;
    for (let i = 0; i < N; i++) {
      const pte = mm.pteAt(ptr + i * PAGE_SIZE);
      expect(pte?.kind).toBe(PteKind.PRESENT);
      expect(pte?.write).toBe(true);
      expect(inPagemap(rig, pte?.pfn ?? 0)).toBe(true);
      expect(sys.refCount(pte?.pfn ?? 0)).toBe(1);
    }
    const inval = sys.stats.invalidations;
    const faults = sys.stats.minorFaults;
    expect(firstMismatch(cpuInts(mm, ptr, N * PAGE_SIZE), (i) => i)).toBe(-1);
    cpuFillInts(mm, ptr, N * PAGE_SIZE, (i) => 5 * i);
    expect(sys.stats.invalidations).toBe(inval);
    expect(sys.stats.minorFaults).toBe(faults);
    expect(mdev0.pagemap.allocatedPages).toBe(N);
    // The CPU's writes went into the device's memory: the device reads them with no fault.
    const cmd = hmmDmirrorCmd(ptr, N);
    expect(d.read(cmd)).toBe(0);
    expect(cmd.faults).toBe(0);
    expect(firstMismatch(ints(cmd.ptr), (i) => 5 * i)).toBe(-1);
  });

  it("hmm_range_fault reports a coherent page as a normal pfn, owner or not", () => {
    const rig = onDevice();
    const { mm, ptr } = rig;
    const sub = notifier(mm);
    for (const owner of [undefined, rig.mdev0, rig.mdev1]) {
      const range = new HmmRange({ notifier: sub, start: ptr, end: ptr + N * PAGE_SIZE, defaultFlags: HMM_PFN_REQ_FAULT, devPrivateOwner: owner });
      range.notifierSeq = mmuIntervalReadBegin(sub);
      mm.mmapReadLock();
      expect(hmmRangeFault(range)).toBe(0);
      mm.mmapReadUnlock();
      for (let i = 0; i < N; i++) {
        expect(range.flags[i]).toBe(HMM_PFN_VALID | HMM_PFN_WRITE);
        expect(range.pfns[i]).toBe(mm.pteAt(ptr + i * PAGE_SIZE)?.pfn);
      }
    }
  });

  it("munmap frees the device pages; a fork shares them copy-on-write and a write copies to system memory", () => {
    const rig = onDevice();
    const { mm, ptr, sys, mdev0 } = rig;
    const pfn0 = mm.pteAt(ptr)?.pfn ?? 0;
    const child = mm.fork();
    expect(sys.refCount(pfn0)).toBe(2);
    expect(mm.pteAt(ptr)?.write).toBe(false);
    expect(child.pteAt(ptr)?.pfn).toBe(pfn0);
    cpuFillInts(child, ptr, PAGE_SIZE, () => -1);
    expect(inPagemap(rig, child.pteAt(ptr)?.pfn ?? 0)).toBe(false);
    expect(sys.refCount(pfn0)).toBe(1);
    expect(cpuInts(mm, ptr, 4)[0]).toBe(0);
    // The parent's write reuses its page in place: it is the only mapping left.
    cpuFillInts(mm, ptr, PAGE_SIZE, () => 9);
    expect(mm.pteAt(ptr)?.pfn).toBe(pfn0);
    child.exit();
    expect(mdev0.pagemap.allocatedPages).toBe(N);
    expect(mm.munmap(ptr, N * PAGE_SIZE)).toBe(0);
    expect(mdev0.pagemap.allocatedPages).toBe(0);
    expect(sys.refCount(pfn0)).toBe(0);
  });

  it("reclaim, NUMA migration and the NUMA scanner leave coherent pages alone", () => {
    const { mm, ptr } = onDevice();
    expect(mm.swapOut(ptr)).toBe(-HmmErrno.EBUSY);
    expect(mm.migratePage(ptr)).toBe(-HmmErrno.EBUSY);
    expect(mm.numaScan(ptr, N * PAGE_SIZE)).toBe(0);
    expect(mm.pteAt(ptr)?.kind).toBe(PteKind.PRESENT);
    // Only a coherent page takes the coherent path out.
    const sysPage = mm.mmap(PAGE_SIZE);
    cpuFillInts(mm, sysPage, PAGE_SIZE, () => 1);
    expect(mm.migrateDeviceCoherentPage(sysPage)).toBe(-HmmErrno.EBUSY);
  });

  it("get_user_pages(FOLL_LONGTERM) migrates a coherent page out first, and the mirror loses it", () => {
    const rig = onDevice();
    const { mm, ptr, d, mdev0 } = rig;
    const pages = new Uint32Array(2);
    expect(getUserPages(mm, ptr, 1, FOLL_WRITE, pages)).toBe(1);
    expect(inPagemap(rig, pages[0] ?? 0)).toBe(true);
    putUserPages(mm, pages, 1);
    expect(getUserPages(mm, ptr + PAGE_SIZE, 1, FOLL_WRITE | FOLL_LONGTERM, pages)).toBe(1);
    const pinned = pages[0] ?? 0;
    expect(inPagemap(rig, pinned)).toBe(false);
    expect(mm.pteAt(ptr + PAGE_SIZE)?.pfn).toBe(pinned);
    expect(mdev0.pagemap.allocatedPages).toBe(N - 1);
    expect(d.liveTranslations(ptr + PAGE_SIZE, ptr + 2 * PAGE_SIZE)).toBe(0);
    expect(cpuInts(mm, ptr + PAGE_SIZE, 4)[0]).toBe(1024);
    putUserPages(mm, pages, 1);
    const snap = hmmDmirrorCmd(ptr, 2);
    expect(d.snapshot(snap)).toBe(0);
    expect([...snap.ptr.subarray(0, 2)]).toEqual([HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL | HMM_DMIRROR_PROT_WRITE, HMM_DMIRROR_PROT_WRITE]);
  });

  it("MIGRATE_TO_SYS and RELEASE move coherent pages to system memory with their bytes", () => {
    const rig = onDevice();
    const { mm, ptr, d, mdev0 } = rig;
    const half = hmmDmirrorCmd(ptr, N / 2);
    expect(d.migrateToSys(half)).toBe(0);
    expect(half.cpages).toBe(N / 2);
    expect(mdev0.pagemap.allocatedPages).toBe(N / 2);
    // A second MIGRATE_TO_SYS finds nothing of this device left there.
    expect(d.migrateToSys(half)).toBe(0);
    expect(half.cpages).toBe(0);
    expect(d.ioctl(7, hmmDmirrorCmd(ptr, N))).toBe(0);
    expect(mdev0.pagemap.allocatedPages).toBe(0);
    for (let i = 0; i < N; i++) {
      const pte = mm.pteAt(ptr + i * PAGE_SIZE);
      expect(pte?.kind).toBe(PteKind.PRESENT);
      expect(inPagemap(rig, pte?.pfn ?? 0)).toBe(false);
    }
    expect(firstMismatch(cpuInts(mm, ptr, N * PAGE_SIZE), (i) => i)).toBe(-1);
    expect(d.liveTranslations(ptr, ptr + N * PAGE_SIZE)).toBe(0);
  });

  it("memunmap refuses while device pages are in use", () => {
    const { mdev0 } = onDevice();
    expect(() => {
      memunmapPages(mdev0.pagemap);
    }).toThrow(HmmStateError);
    expect(mdev0.pagemap.allocatedPages).toBe(N);
  });
});
