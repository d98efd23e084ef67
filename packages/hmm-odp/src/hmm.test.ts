import { DmaDebugError } from "@dmasim/dma";
import { PAGE_SIZE } from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import {
  HMM_PFN_DMA_MAPPED,
  HMM_PFN_ERROR,
  HMM_PFN_P2PDMA,
  HMM_PFN_REQ_FAULT,
  HMM_PFN_REQ_WRITE,
  HMM_PFN_VALID,
  HMM_PFN_WRITE,
  HmmErrno,
  PROT_NONE,
  PROT_READ,
  hmmPfnToMapOrder,
} from "./constants.js";
import { HmmInputError } from "./errors.js";
import { HmmRange, hmmRangeFault } from "./hmm.js";
import type { Mm } from "./mm.js";
import { MADV_HUGEPAGE } from "./mm.js";
import { MmuIntervalNotifier, mmuIntervalNotifierInsert, mmuIntervalReadBegin, mmuIntervalSetSeq } from "./notifier.js";
import { PteKind } from "./pte.js";
import { hmmDmirrorCmd } from "./dmirror.js";
import { hmmRig } from "./test-fixtures.js";

function notifier(mm: Mm): MmuIntervalNotifier {
  const sub = new MmuIntervalNotifier();
  mmuIntervalNotifierInsert(sub, mm, 0, 2 ** 47, {
    invalidate: (s, _r, seq) => {
      mmuIntervalSetSeq(s, seq);
      return true;
    },
  });
  return sub;
}

function fault(mm: Mm, sub: MmuIntervalNotifier, start: number, pages: number, defaultFlags: number, owner?: unknown): { ret: number; range: HmmRange } {
  const range = new HmmRange({ notifier: sub, start, end: start + pages * PAGE_SIZE, defaultFlags, devPrivateOwner: owner });
  let ret: number;
  for (;;) {
    range.notifierSeq = mmuIntervalReadBegin(sub);
    mm.mmapReadLock();
    ret = hmmRangeFault(range);
    mm.mmapReadUnlock();
    if (ret !== -HmmErrno.EBUSY) break;
  }
  return { ret, range };
}

describe("hmm_range_fault", () => {
  it("reports present pages without faulting: VALID, WRITE from the PTE, the frame the CPU maps", () => {
    const { mm } = hmmRig();
    const sub = notifier(mm);
    const a = mm.mmap(4 * PAGE_SIZE);
    mm.write(a, new Uint8Array(4 * PAGE_SIZE).fill(7));
    mm.mprotect(a + 2 * PAGE_SIZE, 2 * PAGE_SIZE, PROT_READ);
    const faults = mm.sys.stats.minorFaults;
    const { ret, range } = fault(mm, sub, a, 4, 0);
    expect(ret).toBe(0);
    expect(mm.sys.stats.minorFaults).toBe(faults);
    for (let i = 0; i < 4; i++) {
      expect(range.pfns[i]).toBe(mm.pteAt(a + i * PAGE_SIZE)?.pfn);
      expect(range.flags[i]).toBe(i < 2 ? HMM_PFN_VALID | HMM_PFN_WRITE : HMM_PFN_VALID);
    }
  });

  it("without a fault request: none, swap and protnone give no VALID; holes and PROT_NONE VMAs give ERROR", () => {
    const { mm } = hmmRig();
    const sub = notifier(mm);
    const a = mm.mmap(4 * PAGE_SIZE);
    mm.write(a + PAGE_SIZE, new Uint8Array(3 * PAGE_SIZE).fill(1));
    expect(mm.swapOut(a + PAGE_SIZE)).toBe(0);
    mm.numaScan(a + 2 * PAGE_SIZE, PAGE_SIZE);
    const hole = mm.mmap(PAGE_SIZE);
    mm.munmap(hole, PAGE_SIZE);
    const none = mm.mmap(PAGE_SIZE, { prot: PROT_NONE });
    const r1 = fault(mm, sub, a, 4, 0);
    expect(r1.ret).toBe(0);
    expect([...r1.range.flags]).toEqual([0, 0, 0, HMM_PFN_VALID | HMM_PFN_WRITE]);
    expect(mm.pteAt(a + 2 * PAGE_SIZE)?.kind).toBe(PteKind.PROTNONE);
    // Part H.1: the protnone entry's frame is reported with VALID clear.
    expect(r1.range.pfns[2]).toBe(mm.pteAt(a + 2 * PAGE_SIZE)?.pfn);
    expect(fault(mm, sub, hole, 1, 0).range.flags[0]).toBe(HMM_PFN_ERROR);
    expect(fault(mm, sub, none, 1, 0).range.flags[0]).toBe(HMM_PFN_ERROR);
  });

  it("with REQ_FAULT: faults none (zero page on read), swap-in, protnone; -EFAULT in a hole or PROT_NONE; -EPERM writing read-only", () => {
    const { mm } = hmmRig();
    const sub = notifier(mm);
    const a = mm.mmap(3 * PAGE_SIZE);
    mm.write(a + PAGE_SIZE, new Uint8Array(2 * PAGE_SIZE).fill(9));
    mm.swapOut(a + PAGE_SIZE);
    mm.numaScan(a + 2 * PAGE_SIZE, PAGE_SIZE);
    const major = mm.sys.stats.majorFaults;
    const r = fault(mm, sub, a, 3, HMM_PFN_REQ_FAULT);
    expect(r.ret).toBe(0);
    expect(mm.sys.stats.majorFaults).toBe(major + 1);
    expect(r.range.pfns[0]).toBe(mm.sys.zeroPfn);
    expect(r.range.flags[0]).toBe(HMM_PFN_VALID);
    expect(mm.read(a + PAGE_SIZE, 4)).toEqual(new Uint8Array(4).fill(9));
    const hole = mm.mmap(PAGE_SIZE);
    mm.munmap(hole, PAGE_SIZE);
    expect(fault(mm, sub, hole, 1, HMM_PFN_REQ_FAULT).ret).toBe(-HmmErrno.EFAULT);
    expect(fault(mm, sub, mm.mmap(PAGE_SIZE, { prot: PROT_NONE }), 1, HMM_PFN_REQ_FAULT).ret).toBe(-HmmErrno.EFAULT);
    expect(fault(mm, sub, mm.mmap(PAGE_SIZE, { prot: PROT_READ }), 1, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE).ret).toBe(-HmmErrno.EPERM);
    // A write request on the zero page breaks COW: a new private page.
    const w = fault(mm, sub, a, 1, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE);
    expect(w.ret).toBe(0);
    expect(w.range.pfns[0]).not.toBe(mm.sys.zeroPfn);
    expect(w.range.flags[0]).toBe(HMM_PFN_VALID | HMM_PFN_WRITE);
  });

  it("honours per-entry requests through pfn_flags_mask and preserves the sticky DMA flags", () => {
    const { mm } = hmmRig();
    const sub = notifier(mm);
    const a = mm.mmap(2 * PAGE_SIZE);
    const range = new HmmRange({ notifier: sub, start: a, end: a + 2 * PAGE_SIZE, pfnFlagsMask: HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE });
    range.flags[0] = HMM_PFN_DMA_MAPPED | HMM_PFN_P2PDMA;
    range.flags[1] = HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE;
    let ret: number;
    do {
      range.notifierSeq = mmuIntervalReadBegin(sub);
      mm.mmapReadLock();
      ret = hmmRangeFault(range);
      mm.mmapReadUnlock();
    } while (ret === -HmmErrno.EBUSY);
    expect(ret).toBe(0);
    expect(range.flags[0]).toBe(HMM_PFN_DMA_MAPPED | HMM_PFN_P2PDMA);
    expect(range.flags[1]).toBe(HMM_PFN_VALID | HMM_PFN_WRITE);
    expect(mm.pteAt(a)?.kind).toBe(PteKind.NONE);
  });

  it("reports a PMD-mapped THP with order 9 on every subpage", () => {
    const { mm } = hmmRig();
    const sub = notifier(mm);
    const a = mm.mmap(2 * 1024 * 1024, { hugepage: true });
    mm.write(a, new Uint8Array(1));
    const r = fault(mm, sub, a, 512, 0);
    expect(r.ret).toBe(0);
    expect(r.range.flags.every((f) => hmmPfnToMapOrder(f) === 9 && (f & HMM_PFN_VALID) !== 0)).toBe(true);
    expect(r.range.pfns[511]).toBe((r.range.pfns[0] ?? 0) + 511);
  });

  it("device-private pages: the owner's are reported (never faulted, H.2), a foreign owner's are faulted back", () => {
    const { mm, mdev0, open } = hmmRig();
    const d = open(0);
    const sub = notifier(mm);
    const a = mm.mmap(PAGE_SIZE);
    mm.write(a, new Uint8Array([1, 2, 3]));
    expect(d.migrateToDev(hmmDmirrorCmd(a, 1))).toBe(0);
    mm.mprotect(a, PAGE_SIZE, PROT_READ);
    const own = fault(mm, sub, a, 1, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE, mdev0);
    expect(own.ret).toBe(0);
    expect(own.range.flags[0]).toBe(HMM_PFN_VALID);
    expect(mm.pteAt(a)?.kind).toBe(PteKind.DEVICE_PRIVATE);
    expect(fault(mm, sub, a, 1, 0).range.flags[0]).toBe(0);
    const foreign = fault(mm, sub, a, 1, HMM_PFN_REQ_FAULT);
    expect(foreign.ret).toBe(0);
    expect(mm.pteAt(a)?.kind).toBe(PteKind.PRESENT);
    expect(mm.read(a, 3)).toEqual(new Uint8Array([1, 2, 3]));
  });

  it("faults in one call and walks on from each faulted page: one onWalk per VMA, at the address the walk restarted from", () => {
    const { mm } = hmmRig();
    const sub = notifier(mm);
    // Two VMAs with a one-page hole between them; the hole asks for nothing (per-entry requests).
    const a = mm.mmap(9 * PAGE_SIZE);
    mm.munmap(a + 4 * PAGE_SIZE, PAGE_SIZE);
    mm.write(a, new Uint8Array(2 * PAGE_SIZE).fill(3));
    const range = new HmmRange({ notifier: sub, start: a, end: a + 9 * PAGE_SIZE, pfnFlagsMask: HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE });
    for (const i of [0, 1, 2, 3, 5, 6, 7, 8]) range.flags[i] = HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE;
    const walked: number[] = [];
    range.onWalk = (addr) => walked.push(addr);
    const faults = mm.sys.stats.minorFaults;
    range.notifierSeq = mmuIntervalReadBegin(sub);
    mm.mmapReadLock();
    const ret = hmmRangeFault(range);
    mm.mmapReadUnlock();
    expect(ret).toBe(0);
    // hmm_vma_fault faults from the first absent page to the end of the VMA's part of the PMD: 2 + 4.
    expect(mm.sys.stats.minorFaults).toBe(faults + 6);
    expect(walked).toEqual([a + 2 * PAGE_SIZE, a + 5 * PAGE_SIZE]);
    for (let i = 0; i < 9; i++) {
      if (i === 4) {
        expect(range.flags[i]).toBe(HMM_PFN_ERROR);
        continue;
      }
      expect(range.flags[i]).toBe(HMM_PFN_VALID | HMM_PFN_WRITE);
      expect(range.pfns[i]).toBe(mm.pteAt(a + i * PAGE_SIZE)?.pfn);
    }
  });

  it("a fault that changes the VMAs (a split without an invalidation) restarts the walk from a fresh lookup", () => {
    const { mm } = hmmRig();
    const sub = notifier(mm);
    const a = mm.mmap(4 * PAGE_SIZE);
    const handle = mm.handleMmFault.bind(mm);
    let split = false;
    mm.handleMmFault = (addr: number, flags: number): number => {
      if (!split) {
        split = true;
        // madvise(MADV_HUGEPAGE) splits the VMA and notifies nobody.
        mm.madvise(a + 2 * PAGE_SIZE, 2 * PAGE_SIZE, MADV_HUGEPAGE);
      }
      return handle(addr, flags);
    };
    const range = new HmmRange({ notifier: sub, start: a, end: a + 4 * PAGE_SIZE, defaultFlags: HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE });
    const walked: number[] = [];
    range.onWalk = (addr) => walked.push(addr);
    range.notifierSeq = mmuIntervalReadBegin(sub);
    mm.mmapReadLock();
    const ret = hmmRangeFault(range);
    mm.mmapReadUnlock();
    expect(ret).toBe(0);
    expect(mm.vmas.filter((v) => v.start >= a && v.end <= a + 4 * PAGE_SIZE)).toHaveLength(2);
    expect(walked).toEqual([a, a + 2 * PAGE_SIZE]);
    for (let i = 0; i < 4; i++) {
      expect(range.flags[i]).toBe(HMM_PFN_VALID | HMM_PFN_WRITE);
      expect(range.pfns[i]).toBe(mm.pteAt(a + i * PAGE_SIZE)?.pfn);
    }
  });

  it("a migration entry is -EBUSY while a fault is requested, 0 without", () => {
    const { mm } = hmmRig();
    const sub = notifier(mm);
    const a = mm.mmap(PAGE_SIZE);
    mm.write(a, new Uint8Array(1));
    let seen = 0;
    let quiet = 0;
    mm.migratePage(a, () => {
      const range = new HmmRange({ notifier: sub, start: a, end: a + PAGE_SIZE, defaultFlags: HMM_PFN_REQ_FAULT });
      range.notifierSeq = mmuIntervalReadBegin(sub);
      mm.mmapReadLock();
      seen = hmmRangeFault(range);
      range.defaultFlags = 0;
      quiet = hmmRangeFault(range);
      mm.mmapReadUnlock();
    });
    expect(seen).toBe(-HmmErrno.EBUSY);
    expect(quiet).toBe(0);
  });

  it("refuses bad ranges with typed errors and leaves the output untouched", () => {
    const { mm } = hmmRig();
    const sub = new MmuIntervalNotifier();
    mmuIntervalNotifierInsert(sub, mm, 0x100000, 0x100000, { invalidate: () => true });
    const bad = (init: Partial<ConstructorParameters<typeof HmmRange>[0]>) => () => hmmRangeFault(new HmmRange({ notifier: sub, start: 0x100000, end: 0x101000, ...init }));
    expect(bad({ start: 0x100001 })).toThrow(HmmInputError);
    expect(bad({ end: 0x100000 })).toThrow(HmmInputError);
    expect(bad({ start: 0x0ff000 })).toThrow(HmmInputError);
    expect(bad({ defaultFlags: HMM_PFN_ERROR })).toThrow(HmmInputError);
    expect(bad({ pfns: new Uint32Array(0) })).toThrow(HmmInputError);
  });

  it("the checker reports hmm_range_fault without the mmap lock, and a retry with a stale sequence", () => {
    const { mm } = hmmRig();
    const sub = notifier(mm);
    const a = mm.mmap(PAGE_SIZE);
    const range = new HmmRange({ notifier: sub, start: a, end: a + PAGE_SIZE });
    range.notifierSeq = mmuIntervalReadBegin(sub);
    expect(() => hmmRangeFault(range)).toThrow(DmaDebugError);
    mm.madvise(a, PAGE_SIZE, 4);
    mm.mmapReadLock();
    expect(hmmRangeFault(range)).toBe(-HmmErrno.EBUSY);
    // The same (overtaken) sequence again: the 2026 amdgpu regression.
    expect(() => hmmRangeFault(range)).toThrow(DmaDebugError);
    mm.mmapReadUnlock();
  });
});
