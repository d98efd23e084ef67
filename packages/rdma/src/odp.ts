import { DMA_MAPPING_ERROR, DmaDirection, dmaMapPage, dmaMappingError, unsafeDmaAddr } from "@dmasim/dma";
import {
  HMM_PFN_DMA_MAPPED,
  HMM_PFN_VALID,
  HMM_PFN_WRITE,
  TASK_SIZE,
  hmmCheckMayProgram,
  hmmDmaMapPfn,
  hmmDmaMapPfnRun,
  mmuIntervalSetSeq,
  mmuNotifierRangeBlockable,
} from "@dmasim/hmm-odp";
import type { MmuIntervalNotifier, MmuNotifierRange } from "@dmasim/hmm-odp";
import { PAGE_SIZE } from "@dmasim/memory";
import {
  IB_ACCESS_LOCAL_WRITE,
  IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH,
  IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_NO_FAULT,
  IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_WRITE,
  IB_UVERBS_ADVISE_MR_FLAG_FLUSH,
  MLX5_IB_MTT_READ,
  MLX5_IB_MTT_WRITE,
  MLX5_IMR_MTT_SIZE,
  MLX5_PF_FLAGS_DOWNGRADE,
  MLX5_PF_FLAGS_ENABLE,
  MLX5_PF_FLAGS_SNAPSHOT,
  RdmaErrno,
} from "./constants.js";
import { RdmaCounter } from "./counters.js";
import { RdmaInputError } from "./errors.js";
import type { IbMr, IbPd } from "./mr.js";
import type { Mlx5Nic } from "./nic.js";
import { ibUmemOdpMapDmaAndLock, ibUmemOdpUnmapDmaPages } from "./umem-odp.js";
import type { IbUmemOdp } from "./umem-odp.js";
import { kCreateImplicitChild, kDestroyUnusedImplicitChild, kLookupMkey, kP2pState, kQueueWork, kRunScratch } from "./internal.js";

/**
 * mlx5r_umr_update_xlt for an ODP MR, with the umem mutex held (mlx5_odp_populate_xlt → populate_mtt):
 * hmm_dma_map_pfn on every VALID entry of [idx, idx + n), and the MTT entry written as
 * `dma | READ | (WRITE unless downgraded)`; entries hmm left invalid (a snapshot) get 0. One UMR WQE,
 * posted and waited for. 0 or -EFAULT (a mapping failed).
 */
export function mlx5rUmrUpdateXlt(nic: Mlx5Nic, mr: IbMr, idx: number, n: number, downgrade: boolean): number {
  const odp = mr.odp;
  if (odp === undefined) throw new RdmaInputError("mlx5r_umr_update_xlt", "mr", mr.lkey, "an ODP MR");
  // The model's check that these entries come from an hmm_range_fault whose sequence passed read_retry.
  hmmCheckMayProgram(odp.notifier, odp.umemMutex);
  const mapped = populateMtt(nic, mr, odp, idx, n, downgrade);
  if (mapped < 0) return mapped;
  const counters = nic.counters;
  counters.add(RdmaCounter.UmrPosts);
  counters.add(RdmaCounter.MttWrites, n);
  counters.add(RdmaCounter.OdpPagesFaulted, mapped);
  const c = nic.costs;
  nic.clock.advance(c.umrPostNs + n * c.umrPerEntryNs + c.umrCompletionNs);
  return 0;
}

/**
 * populate_mtt: the entries [idx, idx + n) of the MTT (see mlx5rUmrUpdateXlt). Returns the entries newly
 * DMA-mapped, or -EFAULT. A function of its own so that the registration's snapshot over a whole MR, whose
 * loop V8 compiles on-stack, leaves no unvisited code after the loop: that code (the UMR's counters)
 * deoptimized each following fault until the function's regular compilation was installed, thousands of
 * times on a loaded machine (--trace-deopt, 512 K pages).
 */
function populateMtt(nic: Mlx5Nic, mr: IbMr, odp: IbUmemOdp, idx: number, n: number, downgrade: boolean): number {
  const map = odp.map;
  const mtt = mr.mtt;
  const dev = odp.dev;
  const p2p = nic[kP2pState];
  let mapped = 0;
  const list = odp.dmaList;
  const batched = nic.odpDma === "hmm_dma_map batched";
  for (let i = idx; i < idx + n; i++) {
    const f = map.flags[i] ?? 0;
    if ((f & HMM_PFN_VALID) === 0) {
      mtt[i] = 0;
      continue;
    }
    const perm = MLX5_IB_MTT_READ + ((f & HMM_PFN_WRITE) !== 0 && !downgrade ? MLX5_IB_MTT_WRITE : 0);
    let dma: number;
    if (list !== undefined) {
      // Before v6.16: a dma_map_page per page not mapped yet, its address kept in dma_list.
      dma = list[i] ?? 0;
      if (dma === 0) {
        dma = dmaMapPage(dev, map.pfns[i] ?? 0, 0, PAGE_SIZE, DmaDirection.BIDIRECTIONAL);
        if (dmaMappingError(dev, unsafeDmaAddr(dma)) !== 0) return -RdmaErrno.EFAULT;
        list[i] = dma;
        odp.npages++;
        mapped++;
      }
    } else if (batched && (f & HMM_PFN_DMA_MAPPED) === 0) {
      // ★ The batched variant: the run of VALID entries not mapped yet, linked with one IOTLB sync.
      let end = i + 1;
      while (end < idx + n && ((map.flags[end] ?? 0) & (HMM_PFN_VALID | HMM_PFN_DMA_MAPPED)) === HMM_PFN_VALID) end++;
      const out = nic[kRunScratch](end - i);
      const got = hmmDmaMapPfnRun(dev, map, i, end - i, p2p, out);
      for (let j = 0; j < got; j++) {
        const fj = map.flags[i + j] ?? 0;
        mtt[i + j] = (out[j] ?? 0) + MLX5_IB_MTT_READ + ((fj & HMM_PFN_WRITE) !== 0 && !downgrade ? MLX5_IB_MTT_WRITE : 0);
      }
      odp.npages += got;
      mapped += got;
      if (got < end - i) return -RdmaErrno.EFAULT;
      i = end - 1;
      continue;
    } else {
      const was = (f & HMM_PFN_DMA_MAPPED) !== 0;
      dma = hmmDmaMapPfn(dev, map, i, p2p);
      if (dma === DMA_MAPPING_ERROR) return -RdmaErrno.EFAULT;
      if (!was) {
        odp.npages++;
        mapped++;
      }
    }
    mtt[i] = dma + perm;
  }
  return mapped;
}

/**
 * pagefault_real_mr: map_dma_and_lock over [userVa, userVa + bcnt) (asking for WRITE on every fault of a
 * writable umem unless downgraded: Part H), the MTT update, unlock. Returns the pages mapped (PAGE_SIZE
 * units) or a negative errno.
 */
export function pagefaultRealMr(nic: Mlx5Nic, mr: IbMr, odp: IbUmemOdp, userVa: number, bcnt: number, flags: number): number {
  const downgrade = (flags & MLX5_PF_FLAGS_DOWNGRADE) !== 0;
  const accessMask = odp.writable && !downgrade ? HMM_PFN_WRITE : 0;
  const np = ibUmemOdpMapDmaAndLock(odp, userVa, bcnt, accessMask, (flags & MLX5_PF_FLAGS_SNAPSHOT) === 0, nic.costs);
  if (np < 0) return np;
  const pg = 1 << odp.pageShift;
  const startIdx = (Math.floor(userVa / pg) * pg - odp.start) / PAGE_SIZE;
  const entries = (np * pg) / PAGE_SIZE;
  let ret: number;
  try {
    ret = mlx5rUmrUpdateXlt(nic, mr, startIdx, entries, downgrade);
  } finally {
    odp.umemMutex.unlock();
  }
  if ((flags & MLX5_PF_FLAGS_ENABLE) !== 0) mr.enabled = true;
  return ret < 0 ? ret : entries;
}

/**
 * pagefault_mr: -EFAULT outside the MR; an implicit MR faults its 1 GiB children (made on demand);
 * otherwise pagefault_real_mr. Returns pages mapped or a negative errno.
 */
export function pagefaultMr(nic: Mlx5Nic, mr: IbMr, ioVirt: number, bcnt: number, flags: number): number {
  if (mr.implicit) return pagefaultImplicitMr(nic, mr, ioVirt, bcnt, flags);
  const odp = mr.odp;
  if (odp === undefined) return -RdmaErrno.EFAULT;
  if (ioVirt < mr.addr || ioVirt + bcnt > mr.addr + mr.length) return -RdmaErrno.EFAULT;
  return pagefaultRealMr(nic, mr, odp, ioVirt, bcnt, flags);
}

/** pagefault_implicit_mr: each 1 GiB block of the range through its child (implicit_get_child_mr). */
function pagefaultImplicitMr(nic: Mlx5Nic, imr: IbMr, va: number, bcnt: number, flags: number): number {
  if (va < 0 || va + bcnt > TASK_SIZE) return -RdmaErrno.EFAULT;
  let total = 0;
  for (let at = va; at < va + bcnt; ) {
    const idx = Math.floor(at / MLX5_IMR_MTT_SIZE);
    const blockEnd = Math.min((idx + 1) * MLX5_IMR_MTT_SIZE, va + bcnt);
    const child = implicitGetChildMr(nic, imr, idx);
    if (typeof child === "number") return child;
    const odp = child.odp;
    if (odp === undefined) return -RdmaErrno.EFAULT;
    const ret = pagefaultRealMr(nic, child, odp, at, blockEnd - at, flags);
    if (ret < 0) return ret;
    total += ret;
    at = blockEnd;
  }
  return total;
}

/**
 * implicit_get_child_mr: the child over block `idx` (1 GiB), made on first use: its own umem (and its own
 * 1 GiB IOVA window, Part H), an MTT mkey enabled with a ZAP|ENABLE UMR, and the parent's KSM entry
 * updated under the parent's umem mutex.
 */
function implicitGetChildMr(nic: Mlx5Nic, imr: IbMr, idx: number): IbMr | number {
  const have = imr.children.get(idx);
  if (have !== undefined) return have;
  const child = nic[kCreateImplicitChild](imr, idx);
  if (typeof child === "number") return child;
  const root = imr.odp;
  root?.umemMutex.lock();
  imr.children.set(idx, child);
  root?.umemMutex.unlock();
  nic.counters.add(RdmaCounter.OdpImplicitChildren);
  nic.counters.add(RdmaCounter.UmrPosts, 2);
  const c = nic.costs;
  nic.clock.advance(2 * (c.umrPostNs + c.umrCompletionNs));
  return child;
}

/** mlx5_ib_init_odp_mr: map what is already present (SNAPSHOT, no fault) and enable the mkey. */
export function mlx5IbInitOdpMr(nic: Mlx5Nic, mr: IbMr): number {
  const odp = mr.odp;
  if (odp === undefined) return -RdmaErrno.EINVAL;
  const ret = pagefaultRealMr(nic, mr, odp, odp.start, odp.end - odp.start, MLX5_PF_FLAGS_SNAPSHOT | MLX5_PF_FLAGS_ENABLE);
  return ret < 0 ? ret : 0;
}

/**
 * mlx5_ib_invalidate_range (the umem's notifier callback): under the umem mutex, set_seq, zap the MTT
 * entries of the range with one blocking UMR (the device cannot reach the pages once this returns),
 * then ib_umem_odp_unmap_dma_pages (DMA unmap, dirty written pages). An implicit child left with no
 * mapped page is queued for destruction. False (nothing done) for a non-blockable range whose mutex is
 * taken.
 */
export function mlx5IbInvalidateRange(nic: Mlx5Nic, mr: IbMr, sub: MmuIntervalNotifier, range: MmuNotifierRange, curSeq: number): boolean {
  const odp = mr.odp;
  if (odp === undefined) return true;
  if (mmuNotifierRangeBlockable(range)) odp.umemMutex.lock();
  else if (!odp.umemMutex.tryLock()) return false;
  try {
    mmuIntervalSetSeq(sub, curSeq);
    if (odp.npages === 0) return true;
    const start = Math.max(range.start, odp.start);
    const end = Math.min(range.end, odp.end);
    const mtt = mr.mtt;
    let zapped = 0;
    for (let i = (start - odp.start) / PAGE_SIZE; i < (end - odp.start) / PAGE_SIZE; i++) {
      if (mtt[i] !== 0) {
        mtt[i] = 0;
        zapped++;
      }
    }
    const counters = nic.counters;
    counters.add(RdmaCounter.OdpInvalidations);
    if (zapped > 0) {
      counters.add(RdmaCounter.OdpMttZapped, zapped);
      counters.add(RdmaCounter.UmrPosts);
      const c = nic.costs;
      nic.clock.advance(c.umrPostNs + zapped * c.umrPerEntryNs + c.umrCompletionNs);
    }
    ibUmemOdpUnmapDmaPages(odp, start, end);
    if (odp.npages === 0 && mr.parent !== undefined) nic[kQueueWork](() => { nic[kDestroyUnusedImplicitChild](mr); });
    return true;
  } finally {
    odp.umemMutex.unlock();
  }
}

/** Device translations live in [start, end) of an ODP MR: non-zero MTT entries (the checker's question). */
export function mttLiveEntries(mr: IbMr, start: number, end: number): number {
  let n = 0;
  const lo = Math.max(0, Math.floor((start - mr.mttStart) / PAGE_SIZE));
  const hi = Math.min(mr.mtt.length, Math.ceil((end - mr.mttStart) / PAGE_SIZE));
  for (let i = lo; i < hi; i++) if (mr.mtt[i] !== 0) n++;
  return n;
}

/** One scatter-gather element of an advise_mr call (struct ib_sge). */
export interface IbAdviseSge {
  /** User address of the first byte to prefetch. */
  readonly addr: number;
  /** Bytes to prefetch. */
  readonly length: number;
  /** Local key of the MR the range belongs to. */
  readonly lkey: number;
}

/**
 * mlx5_ib_advise_mr (ibv_advise_mr): prefetch the ranges into the MTTs. PREFETCH maps read-only
 * (DOWNGRADE), PREFETCH_WRITE writable, PREFETCH_NO_FAULT only what is present (SNAPSHOT). With
 * IB_UVERBS_ADVISE_MR_FLAG_FLUSH it runs now and returns the first error; otherwise the MRs are looked
 * up now (-ENOENT for a key that is not a prefetchable ODP MR of `pd`) and the faults run on the NIC's
 * workqueue (Mlx5Nic.flushWork). -EOPNOTSUPP for an unknown advice, -EINVAL for unknown flags.
 */
export function mlx5IbAdviseMr(nic: Mlx5Nic, pd: IbPd, advice: number, flags: number, sgList: readonly IbAdviseSge[]): number {
  const fn = "mlx5_ib_advise_mr";
  if (!isArray(sgList)) throw new RdmaInputError(fn, "sgList", sgList, "an array of { addr, length, lkey }");
  for (const [i, sge] of sgList.entries()) {
    if (!Number.isSafeInteger(sge.addr) || sge.addr < 0 || !Number.isSafeInteger(sge.length) || sge.length <= 0 || !Number.isSafeInteger(sge.addr + sge.length)) {
      throw new RdmaInputError(fn, `sgList[${i}]`, sge, "an element with a safe-integer addr >= 0 and a positive length");
    }
  }
  let pfFlags: number;
  if (advice === IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH) pfFlags = MLX5_PF_FLAGS_DOWNGRADE;
  else if (advice === IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_WRITE) pfFlags = 0;
  else if (advice === IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_NO_FAULT) pfFlags = MLX5_PF_FLAGS_SNAPSHOT;
  else return -RdmaErrno.EOPNOTSUPP;
  if ((flags & ~IB_UVERBS_ADVISE_MR_FLAG_FLUSH) !== 0) return -RdmaErrno.EINVAL;
  // get_prefetchable_mr for every element first: a refusal changes nothing.
  const mrs: IbMr[] = [];
  for (const sge of sgList) {
    const mr = nic[kLookupMkey](sge.lkey);
    if (mr?.odp === undefined || mr.pd !== pd || mr.parent !== undefined || !mr.enabled || (advice === IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_WRITE && (mr.access & IB_ACCESS_LOCAL_WRITE) === 0)) return -RdmaErrno.ENOENT;
    mrs.push(mr);
  }
  nic.counters.add(RdmaCounter.OdpPrefetches);
  const run = (): number => {
    for (let i = 0; i < mrs.length; i++) {
      const mr = mrs[i];
      const sge = sgList[i];
      if (mr === undefined || sge === undefined || mr.deregistered) continue;
      const ret = pagefaultMr(nic, mr, sge.addr, sge.length, pfFlags);
      if (ret < 0) return ret;
    }
    return 0;
  };
  if ((flags & IB_UVERBS_ADVISE_MR_FLAG_FLUSH) !== 0) return run();
  const copy = sgList.map((s) => ({ ...s }));
  nic[kQueueWork](() => {
    for (let i = 0; i < mrs.length; i++) {
      const mr = mrs[i];
      const sge = copy[i];
      if (mr !== undefined && sge !== undefined && !mr.deregistered) pagefaultMr(nic, mr, sge.addr, sge.length, pfFlags);
    }
  });
  return 0;
}

function isArray(x: unknown): boolean {
  return Array.isArray(x);
}
