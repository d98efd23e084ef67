import { DMA_MAPPING_ERROR, priceCounters } from "@dmasim/dma";
import {
  HMM_PFN_DMA_MAPPED,
  HMM_PFN_INOUT_FLAGS,
  HMM_PFN_FLAGS,
  HMM_PFN_REQ_FAULT,
  HMM_PFN_REQ_WRITE,
  HMM_PFN_VALID,
  HMM_PFN_WRITE,
  HPAGE_PMD_NR,
  HPAGE_PMD_ORDER,
  hmmCheckMayProgram,
  hmmDmaMapPfn,
  hmmDmaMapPfnRun,
  hmmDmaUnmapPfn,
  hmmPfnToMapOrder,
  mmuIntervalNotifierRemove,
  mmuIntervalSetSeq,
  mmuNotifierRangeBlockable,
} from "@dmasim/hmm-odp";
import type { HmmDmaMap, MmuIntervalNotifier, MmuNotifierRange } from "@dmasim/hmm-odp";
import { PAGE_SIZE } from "@dmasim/memory";
import { MLX5_IB_MTT_READ, MLX5_IB_MTT_WRITE, RdmaErrno } from "./constants.js";
import { RdmaCounter } from "./counters.js";
import type { IbUmemMixed, MixedVaSegment } from "./mixed-mr.js";
import type { IbMr } from "./mr.js";
import { umemOdpFaultAndLock } from "./umem-odp.js";
import { kLogEvent, kP2pState, kRunScratch, kSegRange } from "./internal.js";

// The user-VA segments of a mixed MR: ib_umem_odp_map_dma_and_lock + mlx5's populate_mtt and
// mlx5_ib_invalidate_range, over the segment's slice of the MR's one pfn list, IOVA and MTT.

/**
 * The fault of MR pages [first, first + n) of VA segment `s`: hmm_range_fault of the user pages (asking
 * for WRITE on a writable MR, as mlx5 does), retried on -EBUSY until HMM_RANGE_DEFAULT_TIMEOUT, then under
 * the umem mutex with a passing read_retry: hmm_dma_map_pfn into the segment's IOVA slice and the MTT
 * entries, one UMR. Pages mapped, or -EFAULT (unmapped VA, a mapping failure), -EPERM, -EINVAL (exited
 * process), -EBUSY.
 */
export function mixedVaFault(umem: IbUmemMixed, mr: IbMr, s: MixedVaSegment, first: number, n: number): number {
  const mm = s.mm;
  if (mm.users <= 0) return -RdmaErrno.EINVAL;
  const nic = umem.nic;
  const c = nic.costs;
  const range = s[kSegRange];
  range.pfns = umem.map.pfns;
  range.flags = umem.map.flags;
  range.start = s.addr + (first - s.first) * PAGE_SIZE;
  range.end = range.start + n * PAGE_SIZE;
  range.index = first;
  range.defaultFlags = HMM_PFN_REQ_FAULT | (umem.writable ? HMM_PFN_REQ_WRITE : 0);
  range.pfnFlagsMask = 0;
  const lock = umem.umemMutex;
  const ret = umemOdpFaultAndLock(range, mm, lock, nic.clock, c);
  if (ret < 0) return ret;
  try {
    return populate(umem, mr, s, first, n);
  } finally {
    lock.unlock();
  }
}

/**
 * populate_mtt for the slice, umem mutex held: hmm_dma_map_pfn of each VALID entry (or, with the NIC's
 * "hmm_dma_map batched" strategy, one run per sync), one UMR. A faulted page that hmm_range_fault reports
 * PMD-mapped (map order 9: a THP) brings the rest of its 2 MiB in the segment along (thpWiden). Entries
 * written, or -EFAULT.
 */
function populate(umem: IbUmemMixed, mr: IbMr, s: MixedVaSegment, first: number, n: number): number {
  const nic = umem.nic;
  const map = umem.map;
  const mtt = mr.mtt;
  hmmCheckMayProgram(s.notifier, umem.umemMutex);
  const lo = thpWiden(map, s, first, true);
  const hi = thpWiden(map, s, first + n - 1, false);
  let mapped = 0;
  const batched = nic.odpDma === "hmm_dma_map batched";
  // The MTT rights of an entry: READ, plus WRITE when the page is writable and so is the MR.
  const wMask = umem.writable ? HMM_PFN_WRITE : 0;
  for (let i = lo; i < hi; i++) {
    const f = map.flags[i] ?? 0;
    if ((f & HMM_PFN_VALID) === 0) {
      mtt[i] = 0;
      continue;
    }
    if (batched && (f & HMM_PFN_DMA_MAPPED) === 0) {
      // ★ The NIC's batched variant (as mlx5rUmrUpdateXlt): the run of VALID entries not mapped yet,
      // linked with one IOTLB sync.
      let end = i + 1;
      while (end < hi && ((map.flags[end] ?? 0) & (HMM_PFN_VALID | HMM_PFN_DMA_MAPPED)) === HMM_PFN_VALID) end++;
      const out = nic[kRunScratch](end - i);
      const got = hmmDmaMapPfnRun(umem.dev, map, i, end - i, nic[kP2pState], out);
      for (let j = 0; j < got; j++) {
        if (mtt[i + j] === 0) mapped++;
        mtt[i + j] = (out[j] ?? 0) + (((map.flags[i + j] ?? 0) & wMask) !== 0 ? MLX5_IB_MTT_READ + MLX5_IB_MTT_WRITE : MLX5_IB_MTT_READ);
      }
      if (got < end - i) return -RdmaErrno.EFAULT;
      i = end - 1;
      continue;
    }
    const dma = hmmDmaMapPfn(umem.dev, map, i, nic[kP2pState]);
    if (dma === DMA_MAPPING_ERROR) return -RdmaErrno.EFAULT;
    if (mtt[i] === 0) mapped++;
    mtt[i] = dma + ((f & wMask) !== 0 ? MLX5_IB_MTT_READ + MLX5_IB_MTT_WRITE : MLX5_IB_MTT_READ);
  }
  const counters = nic.counters;
  counters.add(RdmaCounter.UmrPosts);
  counters.add(RdmaCounter.MttWrites, hi - lo);
  counters.add(RdmaCounter.OdpPagesFaulted, mapped);
  const c = nic.costs;
  nic.clock.advance(c.umrPostNs + (hi - lo) * c.umrPerEntryNs + c.umrCompletionNs);
  return hi - lo;
}

/**
 * ★ The THP step (dmasim; mlx5 maps a 4 KiB umem page by page, and only a huge-page umem maps by the
 * order): when MR page `i`, just faulted, is VALID with a PMD map order, the other pages of its 2 MiB that
 * lie in the segment are the folio's next frames with the same rights, as of the same notifier sequence
 * (a split, munmap or migration of any of them invalidates the segment and makes read_retry fail), so
 * their pfn-list entries are filled in and they are mapped with the fault's pages, in the same UMR: one
 * fault per huge page instead of 512. Returns the first MR page of the widened slice (`down`) or the page
 * past its end; `i` (or `i + 1`) when the page is not PMD-mapped.
 */
function thpWiden(map: HmmDmaMap, s: MixedVaSegment, i: number, down: boolean): number {
  const flags = map.flags;
  const f = flags[i] ?? 0;
  if ((f & HMM_PFN_VALID) === 0 || hmmPfnToMapOrder(f) < HPAGE_PMD_ORDER) return down ? i : i + 1;
  const inPmd = (Math.floor(s.addr / PAGE_SIZE) + (i - s.first)) % HPAGE_PMD_NR;
  const from = Math.max(s.first, i - inPmd);
  const to = Math.min(s.first + s.pages, i - inPmd + HPAGE_PMD_NR);
  const pfns = map.pfns;
  const pfn = pfns[i] ?? 0;
  const own = f & ~HMM_PFN_INOUT_FLAGS;
  for (let j = down ? from : i + 1; j < (down ? i : to); j++) {
    flags[j] = ((flags[j] ?? 0) & HMM_PFN_INOUT_FLAGS) | own;
    pfns[j] = pfn + (j - i);
  }
  return down ? from : to;
}

/** MR pages of segment `s` that [start, end) of its user addresses covers. */
function slice(s: MixedVaSegment, start: number, end: number): [number, number] {
  const lo = Math.max(start, s.addr);
  const hi = Math.min(end, s.addr + s.pages * PAGE_SIZE);
  if (lo >= hi) return [0, 0];
  return [s.first + Math.floor((lo - s.addr) / PAGE_SIZE), s.first + Math.ceil((hi - s.addr) / PAGE_SIZE)];
}

/** Zaps MTT entries [a, b) and DMA-unmaps them (umem mutex held): the live entries zapped. */
function zapAndUnmap(umem: IbUmemMixed, mr: IbMr, a: number, b: number): number {
  const nic = umem.nic;
  const mtt = mr.mtt;
  const map = umem.map;
  let zapped = 0;
  for (let i = a; i < b; i++) {
    if (mtt[i] !== 0) {
      mtt[i] = 0;
      zapped++;
    }
  }
  const counters = nic.counters;
  if (zapped > 0) {
    counters.add(RdmaCounter.OdpMttZapped, zapped);
    counters.add(RdmaCounter.UmrPosts);
    const c = nic.costs;
    nic.clock.advance(c.umrPostNs + zapped * c.umrPerEntryNs + c.umrCompletionNs);
  }
  for (let i = a; i < b; i++) {
    const f = map.flags[i] ?? 0;
    if (hmmDmaUnmapPfn(umem.dev, map, i) && (f & HMM_PFN_WRITE) !== 0) counters.add(RdmaCounter.OdpPagesDirtied);
    map.flags[i] = (map.flags[i] ?? 0) & ~HMM_PFN_FLAGS;
  }
  return zapped;
}

/**
 * The VA segment's interval-notifier callback (mlx5_ib_invalidate_range's shape): under the umem mutex
 * (a non-blockable range whose mutex is taken returns false), set_seq, zap the segment's MTT entries in
 * the range with one UMR, hmm_dma_unmap_pfn them (its IOVA slice only). An event that found live entries
 * is logged with the mm's start time.
 */
export function mixedVaInvalidate(umem: IbUmemMixed, mr: IbMr, s: MixedVaSegment, sub: MmuIntervalNotifier, range: MmuNotifierRange, curSeq: number): boolean {
  const lock = umem.umemMutex;
  if (mmuNotifierRangeBlockable(range)) lock.lock();
  else if (!lock.tryLock()) return false;
  try {
    mmuIntervalSetSeq(sub, curSeq);
    const [a, b] = slice(s, range.start, range.end);
    if (a === b || umem.released) return true;
    const counters = umem.nic.counters;
    counters.add(RdmaCounter.OdpInvalidations);
    // An event is logged (and priced) only when live MTT entries get zapped: the counter snapshot the
    // price needs is taken only then (a fault migrating a device-private page back invalidates a slice
    // the MTT does not map yet, once per page).
    const before = anyLive(mr, a, b) ? counters.snapshot() : undefined;
    const zapped = zapAndUnmap(umem, mr, a, b);
    if (zapped > 0 && before !== undefined) {
      const recs = s.mm.invalidations.records;
      const tStart = recs[recs.length - 1]?.tStart ?? umem.nic.clock.now;
      const dmaNs = priceCounters(counters.snapshot().diff(before), umem.nic.kernel.profile).totalNs;
      umem[kLogEvent](s, recs[recs.length - 1]?.reason ?? "invalidate", tStart, dmaNs);
    }
    return true;
  } finally {
    lock.unlock();
  }
}

/** True when an MTT entry of [a, b) is live. */
function anyLive(mr: IbMr, a: number, b: number): boolean {
  const mtt = mr.mtt;
  for (let i = a; i < b; i++) if (mtt[i] !== 0) return true;
  return false;
}

/** Live MTT entries of segment `s` in [start, end) of its user addresses (the notifier checker's question). */
export function mixedVaLive(mr: IbMr, s: MixedVaSegment, start: number, end: number): number {
  const [a, b] = slice(s, start, end);
  let n = 0;
  for (let i = a; i < b; i++) if (mr.mtt[i] !== 0) n++;
  return n;
}

/** Release of a VA segment: zap and unmap all of it under the mutex, remove the notifier. */
export function mixedVaRelease(umem: IbUmemMixed, s: MixedVaSegment): void {
  const mr = umem.mr;
  if (mr !== undefined) {
    umem.umemMutex.lock();
    try {
      zapAndUnmap(umem, mr, s.first, s.first + s.pages);
    } finally {
      umem.umemMutex.unlock();
    }
  }
  mmuIntervalNotifierRemove(s.notifier);
}
