import { DmaDirection, dmaUnmapPage, unsafeDmaAddr } from "@dmasim/dma";
import type { DmaDevice } from "@dmasim/dma";
import {
  HMM_PFN_DMA_MAPPED,
  HMM_PFN_FLAGS,
  HMM_PFN_REQ_FAULT,
  HMM_PFN_REQ_WRITE,
  HMM_PFN_VALID,
  HMM_PFN_WRITE,
  HMM_RANGE_DEFAULT_TIMEOUT,
  HmmDmaMap,
  HmmRange,
  MmuIntervalNotifier,
  UserLock,
  hmmDmaMapAlloc,
  hmmDmaMapFree,
  hmmDmaUnmapPfn,
  hmmPfnToMapOrder,
  hmmRangeFault,
  mmuIntervalCheckRetry,
  mmuIntervalNotifierInsert,
  mmuIntervalNotifierRemove,
  mmuIntervalReadBegin,
  mmuIntervalReadRetry,
} from "@dmasim/hmm-odp";
import type { Mm, MmuIntervalNotifierOps } from "@dmasim/hmm-odp";
import { PAGE_SIZE } from "@dmasim/memory";
import { hex } from "@dmasim/trace";
import type { VirtualClock } from "@dmasim/trace";
import { IB_ACCESS_HUGETLB, IB_ACCESS_ON_DEMAND, IB_ACCESS_WRITABLE, RdmaErrno } from "./constants.js";
import type { RdmaCosts } from "./costs.js";
import { RdmaCounter } from "./counters.js";
import { RdmaInputError } from "./errors.js";
import { kOdpRange } from "./internal.js";

const PAGE_SHIFT = 12;
const HPAGE_SHIFT = 21;

/**
 * struct ib_umem_odp (drivers/infiniband/core/umem_odp.c, v6.16+): the notifier over the umem's
 * interval, the hmm_dma_map (its pfn list is hmm_range_fault's output and the only record of what is
 * DMA-mapped), the umem mutex (the notifier's user_lock), the count of DMA-mapped entries.
 */
export class IbUmemOdp {
  /** The device the umem's pages are DMA-mapped for. */
  readonly dev: DmaDevice;
  /** The process whose address range the umem mirrors (ib_umem_odp.umem.owning_mm). */
  readonly owningMm: Mm;
  /** The umem's user address (ib_umem.address) and length. */
  readonly address: number;
  /** Bytes from `address` (0 for an implicit umem). */
  readonly length: number;
  /** IB_ACCESS_* bits of the registration. */
  readonly access: number;
  /** ib_access_writable(access): pages are faulted and mapped for device writes. */
  readonly writable: boolean;
  /** An implicit parent (the whole address space, children on demand) rather than a umem over one range. */
  readonly isImplicitOdp: boolean;
  /** log2 of the umem's page size: 12, or 21 with IB_ACCESS_HUGETLB. */
  readonly pageShift: number;
  /** The mmu_interval_notifier over [start, end): its invalidate callback unmaps what the mm takes away. */
  readonly notifier = new MmuIntervalNotifier();
  /** The hmm_dma_map: the pfn list hmm_range_fault fills and, with the two-step API, the IOVA of the whole umem. */
  readonly map = new HmmDmaMap();
  /** umem_mutex, the notifier's user lock: held while the MTT is updated and during invalidation. */
  readonly umemMutex: UserLock;
  /** Entries DMA-mapped now (mlx5 populate_mtt increments, unmap_dma_pages decrements). */
  npages = 0;
  /** The driver's object (odp->private: the MR). */
  private: unknown = undefined;
  /** ib_umem_start / ib_umem_end. */
  readonly start: number;
  /** Page-aligned end of the umem's interval (exclusive); 0 for an implicit parent. */
  readonly end: number;
  /** The implicit parent, for a child. */
  readonly root: IbUmemOdp | undefined;
  /** Package-private (keyed by a symbol `.` does not export): reused across faults (one fault at a time per umem, under the model's single thread). */
  readonly [kOdpRange]: HmmRange | undefined;
  /** Set by ib_umem_odp_release: the notifier is removed and every page unmapped. */
  released = false;
  /**
   * ODP before the two-step API (v6.15 and earlier): a dma_addr_t per page from dma_map_page, 0 when the
   * page is not mapped; no IOVA reserved. Undefined for the hmm_dma_map umem of v6.16+.
   */
  dmaList: Float64Array | undefined = undefined;

  /** Made by ibUmemOdpGet / ibUmemOdpAllocImplicit / ibUmemOdpAllocChild (`.` exports the class as a type only). */
  constructor(init: { dev: DmaDevice; mm: Mm; address: number; length: number; access: number; implicit: boolean; root?: IbUmemOdp; name: string }) {
    this.dev = init.dev;
    this.owningMm = init.mm;
    this.address = init.address;
    this.length = init.length;
    this.access = init.access;
    this.writable = (init.access & IB_ACCESS_WRITABLE) !== 0;
    this.isImplicitOdp = init.implicit;
    this.pageShift = (init.access & IB_ACCESS_HUGETLB) !== 0 ? HPAGE_SHIFT : PAGE_SHIFT;
    const pg = 2 ** this.pageShift;
    this.start = init.implicit ? 0 : Math.floor(init.address / pg) * pg;
    this.end = init.implicit ? 0 : Math.ceil((init.address + init.length) / pg) * pg;
    this.root = init.root;
    this.umemMutex = new UserLock(`${init.name}.umem_mutex`);
    this.notifier.owner = init.name;
    this[kOdpRange] = init.implicit ? undefined : new HmmRange({ notifier: this.notifier, start: this.start, end: this.start + PAGE_SIZE, pfns: this.map.pfns, flags: this.map.flags });
  }
}

function checkVirt(fn: string, addr: number, size: number): void {
  if (!Number.isSafeInteger(addr) || addr < 0) throw new RdmaInputError(fn, "addr", addr, "a user address: a safe integer >= 0");
  if (!Number.isSafeInteger(size) || size <= 0) throw new RdmaInputError(fn, "size", size, "a positive byte count");
}

/**
 * ib_umem_odp_get: an ODP umem over [addr, addr + size) of `mm` for `dev`. Maps nothing and faults
 * nothing: it reserves the IOVA of the whole range (hmm_dma_map_alloc) and inserts the notifier.
 * Returns the umem, or -EINVAL (no IB_ACCESS_ON_DEMAND, an exited mm), -EOVERFLOW, -EOPNOTSUPP (a device
 * that needs DMA syncs or bouncing), -ENOMEM.
 */
export function ibUmemOdpGet(dev: DmaDevice, mm: Mm, addr: number, size: number, access: number, ops: MmuIntervalNotifierOps, name = `${dev.bdf}.odp`, options: UmemOdpOptions = {}): IbUmemOdp | number {
  const fn = "ib_umem_odp_get";
  checkVirt(fn, addr, size);
  if ((access & IB_ACCESS_ON_DEMAND) === 0) {
    dev.kernel.debug.warnOnce(dev.bdf, fn, `${fn}: WARN_ON_ONCE(!(access & IB_ACCESS_ON_DEMAND))`);
    return -RdmaErrno.EINVAL;
  }
  const pg = (access & IB_ACCESS_HUGETLB) !== 0 ? 2 ** HPAGE_SHIFT : PAGE_SIZE;
  const end = Math.ceil((addr + size) / pg) * pg;
  if (!Number.isSafeInteger(end) || end > 2 ** 52) return -RdmaErrno.EOVERFLOW;
  if (mm.users <= 0) return -RdmaErrno.EINVAL;
  const odp = new IbUmemOdp({ dev, mm, address: addr, length: size, access, implicit: false, name });
  return initUmemOdp(odp, ops, options);
}

/** How an ODP umem DMA-maps its pages. */
export interface UmemOdpOptions {
  /** The pre-two-step umem (v6.15 and earlier): a pfn list and a dma_addr_t per page, dma_map_page per fault. */
  readonly dmaMapPage?: boolean;
}

/** ib_init_umem_odp: hmm_dma_map_alloc over the page-aligned interval, then the notifier. */
function initUmemOdp(odp: IbUmemOdp, ops: MmuIntervalNotifierOps, options: UmemOdpOptions): IbUmemOdp | number {
  const nrEntries = (odp.end - odp.start) / PAGE_SIZE;
  if (options.dmaMapPage === true) {
    // The old umem: pfn_list and dma_list, nothing reserved up front.
    odp.map.pfns = new Uint32Array(nrEntries);
    odp.map.flags = new Uint16Array(nrEntries);
    odp.map.nrEntries = nrEntries;
    odp.map.dmaEntrySize = PAGE_SIZE;
    odp.dmaList = new Float64Array(nrEntries);
  } else {
    // The DMA entry size stays PAGE_SIZE even for hugetlb umems: see the README's deviations.
    const ret = hmmDmaMapAlloc(odp.dev, odp.map, nrEntries, PAGE_SIZE);
    if (ret !== 0) return ret;
  }
  odp.map.userLock = odp.umemMutex;
  const range = odp[kOdpRange];
  if (range !== undefined) {
    range.pfns = odp.map.pfns;
    range.flags = odp.map.flags;
  }
  const ins = mmuIntervalNotifierInsert(odp.notifier, odp.owningMm, odp.start, odp.end - odp.start, ops);
  if (ins !== 0) {
    if (odp.dmaList === undefined) hmmDmaMapFree(odp.dev, odp.map);
    return ins;
  }
  return odp;
}

/** ib_umem_odp_alloc_implicit: the parent of an implicit MR: no range, no map, no notifier. */
export function ibUmemOdpAllocImplicit(dev: DmaDevice, mm: Mm, access: number, name = `${dev.bdf}.odp-implicit`): IbUmemOdp | number {
  if ((access & IB_ACCESS_HUGETLB) !== 0) return -RdmaErrno.EINVAL;
  if (mm.users <= 0) return -RdmaErrno.EINVAL;
  return new IbUmemOdp({ dev, mm, address: 0, length: 0, access, implicit: true, name });
}

/**
 * ib_umem_odp_alloc_child: a child of an implicit umem over [addr, addr + size), sharing the root's mm;
 * -EFAULT once the mm has exited (mmget_not_zero). Each child reserves its own IOVA window.
 */
export function ibUmemOdpAllocChild(root: IbUmemOdp, addr: number, size: number, ops: MmuIntervalNotifierOps, name = `${root.notifier.owner}.child@${hex(addr)}`, options: UmemOdpOptions = {}): IbUmemOdp | number {
  const fn = "ib_umem_odp_alloc_child";
  if (!root.isImplicitOdp) throw new RdmaInputError(fn, "root", root.notifier.owner, "an implicit ODP umem");
  checkVirt(fn, addr, size);
  if (root.owningMm.users <= 0) return -RdmaErrno.EFAULT;
  const odp = new IbUmemOdp({ dev: root.dev, mm: root.owningMm, address: addr, length: size, access: root.access, implicit: false, root, name });
  return initUmemOdp(odp, ops, options);
}

/**
 * ib_umem_odp_map_dma_and_lock: hmm_range_fault over the pages of [userVirt, userVirt + bcnt) (with
 * REQ_FAULT, and REQ_WRITE when `accessMask` has HMM_PFN_WRITE, unless `fault` is false: a snapshot),
 * retrying on -EBUSY until HMM_RANGE_DEFAULT_TIMEOUT; then takes the umem mutex and, when read_retry
 * passes, returns the number of pages (page_shift units) **with the mutex held**. It maps no DMA: the
 * driver does that while it writes its translation table. On error the mutex is not held:
 * -EFAULT (outside the umem, or a page that cannot be faulted), -EPERM (write to a read-only VMA),
 * -EINVAL (the process has exited; a hugetlb umem over a smaller page), -EBUSY (the timeout).
 */
export function ibUmemOdpMapDmaAndLock(odp: IbUmemOdp, userVirt: number, bcnt: number, accessMask: number, fault: boolean, costs: Pick<RdmaCosts, "faultAttemptNs" | "migrationWaitNs">): number {
  const fn = "ib_umem_odp_map_dma_and_lock";
  const range = odp[kOdpRange];
  if (range === undefined) throw new RdmaInputError(fn, "odp", odp.notifier.owner, "a umem with a range (not an implicit parent)");
  if (!Number.isSafeInteger(userVirt) || !Number.isSafeInteger(bcnt) || bcnt <= 0) throw new RdmaInputError(fn, "bcnt", bcnt, "a positive byte count at a safe-integer address");
  if ((accessMask & ~HMM_PFN_WRITE) !== 0) throw new RdmaInputError(fn, "accessMask", accessMask, "HMM_PFN_WRITE or 0");
  if (userVirt < odp.start || userVirt + bcnt > odp.end) return -RdmaErrno.EFAULT;
  const mm = odp.owningMm;
  if (mm.users <= 0 || odp.released) return -RdmaErrno.EINVAL;
  const pg = 1 << odp.pageShift; // an int32 shift: 2 ** is a floating-point power on every fault
  const start = Math.floor(userVirt / pg) * pg;
  const end = Math.ceil((userVirt + bcnt) / pg) * pg;
  range.start = start;
  range.end = end;
  range.index = (start - odp.start) / PAGE_SIZE;
  range.defaultFlags = fault ? HMM_PFN_REQ_FAULT | ((accessMask & HMM_PFN_WRITE) !== 0 ? HMM_PFN_REQ_WRITE : 0) : 0;
  range.pfnFlagsMask = 0;
  const ret = umemOdpFaultAndLock(range, mm, odp.umemMutex, odp.dev.kernel.trace.clock, costs);
  if (ret < 0) return ret;
  if (odp.pageShift !== PAGE_SHIFT) {
    // Every page hmm reports must be mapped at least as large as the umem's page size.
    const flags = odp.map.flags;
    const n = (end - start) / PAGE_SIZE;
    for (let j = 0; j < n; j++) {
      const f = flags[range.index + j] ?? 0;
      if ((f & HMM_PFN_DMA_MAPPED) !== 0 || (f & HMM_PFN_VALID) === 0) continue;
      if (hmmPfnToMapOrder(f) + PAGE_SHIFT < odp.pageShift) {
        odp.umemMutex.unlock();
        return -RdmaErrno.EINVAL;
      }
    }
  }
  return (end - start) / pg;
}

/**
 * The fault loop of ib_umem_odp_map_dma_and_lock over a range already set up (its notifier, addresses,
 * pfn list and request flags): mmu_interval_read_begin, hmm_range_fault under the mmap read lock, retried
 * on -EBUSY until HMM_RANGE_DEFAULT_TIMEOUT (an -EBUSY with no invalidation since read_begin is a
 * migration entry: the wait is modelled); then `lock` (the umem mutex) is taken and, when
 * mmu_interval_read_retry passes, 0 is returned **with it held**. Otherwise -errno (-EFAULT, -EPERM,
 * -EBUSY after the timeout) and the lock is not held. An ODP umem and the user-VA segments of a mixed MR
 * fault through it.
 */
export function umemOdpFaultAndLock(range: HmmRange, mm: Mm, lock: UserLock, clock: VirtualClock, costs: Pick<RdmaCosts, "faultAttemptNs" | "migrationWaitNs">): number {
  const notifier = range.notifier;
  const deadline = clock.now + HMM_RANGE_DEFAULT_TIMEOUT * 1e6;
  for (;;) {
    clock.advance(costs.faultAttemptNs);
    const seq = mmuIntervalReadBegin(notifier);
    range.notifierSeq = seq;
    mm.mmapReadLock();
    let ret: number;
    try {
      ret = hmmRangeFault(range);
    } finally {
      mm.mmapReadUnlock();
    }
    if (ret !== 0) {
      if (ret === -RdmaErrno.EBUSY && clock.now <= deadline) {
        // No invalidation since read_begin: a migration entry, and hmm_range_fault would have slept.
        if (!mmuIntervalCheckRetry(notifier, seq)) clock.advance(costs.migrationWaitNs);
        continue;
      }
      return ret;
    }
    lock.lock();
    if (mmuIntervalReadRetry(notifier, seq, lock)) {
      lock.unlock();
      continue;
    }
    return 0;
  }
}

/**
 * ib_umem_odp_unmap_dma_pages: under the umem mutex, hmm_dma_unmap_pfn on every entry of [virt, bound);
 * an entry that was mapped and writable dirties its page (set_page_dirty) and leaves `npages`. Every
 * entry's flags are cleared.
 */
export function ibUmemOdpUnmapDmaPages(odp: IbUmemOdp, virt: number, bound: number): void {
  const fn = "ib_umem_odp_unmap_dma_pages";
  if (!odp.umemMutex.held) odp.dev.kernel.debug.report("hmm-dma-map-unlocked", odp.dev.bdf, `${fn} without ${odp.umemMutex.name} (lockdep_assert_held)`);
  const lo = Math.max(virt, odp.start);
  const hi = Math.min(bound, odp.end);
  const map = odp.map;
  const counters = odp.dev.kernel.trace.counters;
  for (let a = lo; a < hi; a += PAGE_SIZE) {
    const i = (a - odp.start) / PAGE_SIZE;
    const f = map.flags[i] ?? 0;
    const list = odp.dmaList;
    if (list !== undefined) {
      // ib_umem_odp_unmap_dma_pages before v6.16: dma_unmap_page of each mapped entry.
      const dma = list[i] ?? 0;
      if (dma !== 0) {
        dmaUnmapPage(odp.dev, unsafeDmaAddr(dma), PAGE_SIZE, DmaDirection.BIDIRECTIONAL);
        list[i] = 0;
        if ((f & HMM_PFN_WRITE) !== 0) counters.add(RdmaCounter.OdpPagesDirtied);
        odp.npages--;
      }
    } else if (hmmDmaUnmapPfn(odp.dev, map, i)) {
      if ((f & HMM_PFN_WRITE) !== 0) counters.add(RdmaCounter.OdpPagesDirtied);
      odp.npages--;
    }
    map.flags[i] = (map.flags[i] ?? 0) & ~HMM_PFN_FLAGS;
  }
}

/** ib_umem_odp_release: unmaps every page under the mutex, removes the notifier, frees the map. */
export function ibUmemOdpRelease(odp: IbUmemOdp): void {
  if (odp.released) return;
  odp.released = true;
  if (odp.isImplicitOdp) return;
  odp.umemMutex.lock();
  ibUmemOdpUnmapDmaPages(odp, odp.start, odp.end);
  odp.umemMutex.unlock();
  mmuIntervalNotifierRemove(odp.notifier);
  if (odp.dmaList === undefined) hmmDmaMapFree(odp.dev, odp.map);
}
