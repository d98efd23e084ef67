import { DMA_BIT_MASK, DmaDirection, DmaIovaState, PciP2pdmaMapState, dmaIovaDestroy, dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc, dmaMapPhys, dmaMappingError, dmaSetMaskAndCoherent, dmaUnmapPhys, unsafeDmaAddr } from "@dmasim/dma";
import type { DmaDevice, DmaKernel } from "@dmasim/dma";
import type { DmaBuf } from "@dmasim/dmabuf";
import { FAULT_FLAG_WRITE, PteKind, TASK_SIZE, VM_FAULT_ERROR } from "@dmasim/hmm-odp";
import type { HmmDmaStrategy, Mm, MmuIntervalNotifierOps } from "@dmasim/hmm-odp";
import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import type { Endpoint } from "@dmasim/pcie-p2p";
import { PcieAccessError } from "@dmasim/pcie-p2p";
import type { Counters, VirtualClock } from "@dmasim/trace";
import { hex } from "@dmasim/trace";
import {
  IB_ACCESS_HUGETLB,
  IB_ACCESS_ON_DEMAND,
  IB_ACCESS_REMOTE_ATOMIC,
  IB_ACCESS_REMOTE_READ,
  IB_ACCESS_REMOTE_WRITE,
  IB_ACCESS_LOCAL_WRITE,
  IB_ACCESS_SUPPORTED,
  IB_ACCESS_WRITABLE,
  IB_IMPLICIT_ODP_LENGTH,
  MLX5_IB_MTT_READ,
  MLX5_IB_MTT_WRITE,
  MLX5_IMR_MTT_SIZE,
  RdmaErrno,
} from "./constants.js";
import { DEFAULT_RDMA_COSTS } from "./costs.js";
import type { RdmaCosts } from "./costs.js";
import { RdmaCounter } from "./counters.js";
import { RdmaDmabufCounter } from "./dmabuf-counters.js";
import { dmabufMrDeregBusy, mlx5DmabufMrRelease, mlx5IbRegUserMrDmabuf, pagefaultDmabufMr } from "./dmabuf-mr.js";
import type { RegDmabufMrOptions } from "./dmabuf-mr.js";
import { ibUmemDmabufDeviceAccess } from "./umem-dmabuf.js";
import { RdmaInputError } from "./errors.js";
import { IbMr, IbPd } from "./mr.js";
import type { IbUmemPinned } from "./mr.js";
import { mlx5IbAdviseMr, mlx5IbInitOdpMr, mlx5IbInvalidateRange, mttLiveEntries, pagefaultMr } from "./odp.js";
import type { IbAdviseSge } from "./odp.js";
import { ibUmemOdpAllocChild, ibUmemOdpAllocImplicit, ibUmemOdpGet, ibUmemOdpRelease } from "./umem-odp.js";
import type { PhysAddr } from "@dmasim/memory";
import { kAdoptMkey, kAllocMkey, kCreateImplicitChild, kDestroyUnusedImplicitChild, kInstallMkey, kLookupMkey, kNextQpn, kP2pState, kQueueWork, kRunScratch, kWqeBuffer } from "./internal.js";

const BIDIR = DmaDirection.BIDIRECTIONAL;
/** How often the NIC replays an access after a successful page fault before it gives up. */
const MAX_REPLAYS = 4;

/** Why a NIC access failed (0 = it completed). */
export const NicAccessResult = {
  OK: 0,
  /** No such key, another PD, a disabled or deregistered mkey, outside the MR, or missing access rights. */
  PROTECTION: 1,
  /** The ODP page fault handler failed (the page cannot be made present with the rights asked). */
  FAULT_FAILED: 2,
  /** The IOMMU (or the fabric) refused the translated address. */
  IOMMU_FAULT: 3,
} as const;
export type NicAccessResult = (typeof NicAccessResult)[keyof typeof NicAccessResult];

/** What an access needs of the MR's access flags and of its MTT entries. */
export const NicAccess = {
  LOCAL_READ: 0,
  LOCAL_WRITE: 1,
  REMOTE_READ: 2,
  REMOTE_WRITE: 3,
  REMOTE_ATOMIC: 4,
} as const;
export type NicAccess = (typeof NicAccess)[keyof typeof NicAccess];

const ACCESS_FLAG = [0, IB_ACCESS_LOCAL_WRITE, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE, IB_ACCESS_REMOTE_ATOMIC] as const;
const ACCESS_WRITES = [false, true, false, true, true] as const;

/** How the driver DMA-maps ODP pages (the comparison of the two-step API's benefit for ODP). */
export type OdpDmaStrategy = HmmDmaStrategy;

/** Options of a NIC: overrides of the fault path's costs, and how the driver DMA-maps ODP pages. */
export interface Mlx5NicOptions {
  /** Cost rows of the fault path (overrides of DEFAULT_RDMA_COSTS). */
  readonly costs?: Partial<RdmaCosts>;
  /**
   * "hmm_dma_map" (default, v6.16+: one IOVA per umem, a link and an IOTLB sync per page),
   * "hmm_dma_map batched" (★ one sync per run of faulted pages), or "pfn-list + dma_map_page" (ODP before
   * the two-step API: a dma_map_page and a dma_addr_t per page).
   */
  readonly odpDma?: OdpDmaStrategy;
  /** The device supports on-demand paging (default true); without it dynamic dmabuf MRs are refused. */
  readonly odp?: boolean;
}

/**
 * An mlx5-like RDMA NIC on a PCIe endpoint, with its driver (mlx5_ib). Memory keys and their MTTs are
 * the device's tables; every data access looks the MTT up and goes through the fabric
 * (endpoint.dmaRead / dmaWrite), so the IOMMU translates it and a bad translation is a real fault.
 * An absent or too-weak MTT entry of an ODP MR raises a page-fault event that the driver handles
 * (pagefault_mr) before the access is replayed. The driver's asynchronous work (prefetch without
 * FLUSH, destroying idle implicit children) waits on a workqueue that `flushWork` drains.
 */
export class Mlx5Nic {
  /** The DMA kernel the driver maps through. */
  readonly kernel: DmaKernel;
  /** The NIC as a DMA device (64-bit mask, set at probe as mlx5_pci_init does). */
  readonly dev: DmaDevice;
  /** The PCIe endpoint the NIC's reads and writes go through (translated by its IOMMU). */
  readonly endpoint: Endpoint;
  /** Nanoseconds of each step of the fault path and the wire (the defaults with the options' overrides). */
  readonly costs: RdmaCosts;
  /** The platform's counters, with the RDMA block declared. */
  readonly counters: Counters;
  /** The platform's virtual clock (ns), advanced by the modelled time of faults and transfers. */
  readonly clock: VirtualClock;
  /** Package-private (keyed by a symbol `.` does not export): the P2P lookup state the driver's hmm_dma_map_pfn calls share. */
  readonly [kP2pState] = new PciP2pdmaMapState();
  readonly #mkeys = new Map<number, IbMr>();
  /**
   * The live mkeys again, by key >>> 8 (keys are handed out 0x100 apart): the lookup of every WR's lkey
   * and rkey is an array index rather than a Map probe. #setMkey and #deleteMkey keep the two in step.
   */
  readonly #mkeyIndex: (IbMr | undefined)[] = [];
  #nextKey = 0x100;
  #nextPd = 1;
  readonly #work: (() => void)[] = [];
  /** Package-private (keyed by a symbol `.` does not export): QP numbers handed out by this NIC. */
  [kNextQpn] = 0x40;
  /** Page-fault events raised, those whose handler failed, and accesses replayed after a fault. */
  readonly stats = { pageFaultEvents: 0, faultErrors: 0, replays: 0 };
  /** How the driver DMA-maps ODP pages (hmm_dma_map, its batched variant, or dma_map_page per page). */
  readonly odpDma: OdpDmaStrategy;
  /** IBK_ON_DEMAND_PAGING: the device can take page faults (Mlx5NicOptions.odp). */
  readonly odpCapable: boolean;
  #scratch = new Float64Array(64);
  #wqeBuf = new Uint8Array(64);

  constructor(kernel: DmaKernel, bdf: string, options: Mlx5NicOptions = {}) {
    this.kernel = kernel;
    this.dev = kernel.device(bdf);
    this.endpoint = kernel.platform.endpoint(bdf);
    this.costs = { ...DEFAULT_RDMA_COSTS, ...options.costs };
    this.odpDma = options.odpDma ?? "hmm_dma_map";
    this.counters = kernel.trace.counters;
    this.counters.declare(RdmaCounter);
    this.counters.declare(RdmaDmabufCounter);
    this.odpCapable = options.odp ?? true;
    this.clock = kernel.trace.clock;
    // mlx5_pci_init: the device addresses 64 bits (implicit ODP needs room for many 1 GiB IOVA windows).
    dmaSetMaskAndCoherent(this.dev, DMA_BIT_MASK(64));
  }

  /** The NIC's PCI name. */
  get bdf(): string {
    return this.dev.bdf;
  }

  /** ib_alloc_pd. */
  allocPd(): IbPd {
    return new IbPd(this, this.#nextPd++);
  }

  /** Package-private (keyed by a symbol `.` does not export): the MR of an mkey (lkey or rkey), live or not. */
  [kLookupMkey](key: number): IbMr | undefined {
    const mr = this.#mkeyIndex[key >>> 8];
    return mr?.lkey === key ? mr : undefined;
  }

  #setMkey(key: number, mr: IbMr): void {
    this.#mkeys.set(key, mr);
    this.#mkeyIndex[key >>> 8] = mr;
  }

  #deleteMkey(key: number): void {
    this.#mkeys.delete(key);
    if (this.#mkeyIndex[key >>> 8]?.lkey === key) this.#mkeyIndex[key >>> 8] = undefined;
  }

  /** Every registered user MR (implicit children excluded). */
  get mrs(): readonly IbMr[] {
    return [...this.#mkeys.values()].filter((m) => m.parent === undefined);
  }

  #newKey(): number {
    const k = this.#nextKey;
    this.#nextKey += 0x100;
    return k | 0x42;
  }

  // ---- registration ----------------------------------------------------------------------------
  /**
   * ibv_reg_mr → ib_reg_user_mr → mlx5_ib_reg_user_mr. With IB_ACCESS_ON_DEMAND: an ODP MR (nothing
   * pinned; present pages mapped by a snapshot, the rest faulted on access), or with addr 0 and
   * IB_IMPLICIT_ODP_LENGTH an implicit ODP MR over the whole address space. Without it: a pinned MR
   * (pin_user_pages, then one IOVA for all its pages). Returns the MR or a negative errno: -EINVAL
   * (REMOTE_WRITE or REMOTE_ATOMIC without LOCAL_WRITE, as ib_check_mr_access; HUGETLB without ODP; an
   * exited process), -EFAULT (a page that cannot be pinned), -EOPNOTSUPP, -ENOMEM.
   * Throws RdmaInputError for unknown access bits and unaligned, empty or overflowing ranges.
   */
  regMr(pd: IbPd, mm: Mm, addr: number, length: number, access: number): IbMr | number {
    const fn = "ib_reg_user_mr";
    if (!(pd instanceof IbPd) || pd.nic !== this || pd.deallocated) throw new RdmaInputError(fn, "pd", pd, `a live protection domain of ${this.bdf}`);
    if (!Number.isInteger(access) || (access & ~IB_ACCESS_SUPPORTED) !== 0) throw new RdmaInputError(fn, "access", access, `IB_ACCESS_* bits (unknown: ${hex((access | 0) & ~IB_ACCESS_SUPPORTED)})`);
    const implicit = (access & IB_ACCESS_ON_DEMAND) !== 0 && addr === 0 && length === IB_IMPLICIT_ODP_LENGTH;
    if (!implicit) {
      if (!Number.isSafeInteger(addr) || addr < 0) throw new RdmaInputError(fn, "addr", addr, "a user address: a safe integer >= 0");
      if (!Number.isSafeInteger(length) || length <= 0) throw new RdmaInputError(fn, "length", length, "a positive byte count");
      if (addr + length > TASK_SIZE) throw new RdmaInputError(fn, "length", length, `addr + length <= TASK_SIZE (${hex(TASK_SIZE)})`);
      if ((access & IB_ACCESS_HUGETLB) !== 0 && (addr % (2 * 1024 * 1024) !== 0 || length % (2 * 1024 * 1024) !== 0)) {
        throw new RdmaInputError(fn, "addr", addr, "with IB_ACCESS_HUGETLB: a 2 MiB-aligned address and length");
      }
    }
    // ib_check_mr_access.
    if ((access & (IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_ATOMIC)) !== 0 && (access & IB_ACCESS_LOCAL_WRITE) === 0) return -RdmaErrno.EINVAL;
    if ((access & IB_ACCESS_HUGETLB) !== 0 && (access & IB_ACCESS_ON_DEMAND) === 0) return -RdmaErrno.EINVAL;
    if (mm.users <= 0) return -RdmaErrno.EINVAL;
    if (implicit) return this.#regImplicit(pd, mm, access);
    if ((access & IB_ACCESS_ON_DEMAND) !== 0) return this.#regOdp(pd, mm, addr, length, access);
    return this.#regPinned(pd, mm, addr, length, access);
  }

  /**
   * ibv_reg_dmabuf_mr (mlx5_ib_reg_user_mr_dmabuf): an MR over [iova, iova + length) backed by
   * [offset, offset + length) of a dma-buf, dynamic (default), pinned or pinned-revocable, through the
   * exporter's sg_table or the physical-range list (see mlx5IbRegUserMrDmabuf).
   */
  regDmabufMr(pd: IbPd, buf: DmaBuf, offset: number, length: number, iova: number, access: number, options: RegDmabufMrOptions = {}): IbMr | number {
    return mlx5IbRegUserMrDmabuf(this, pd, buf, offset, length, iova, access, options);
  }

  /** Package-private (keyed by a symbol `.` does not export): a new mkey value (lkey = rkey). */
  [kAllocMkey](): number {
    return this.#newKey();
  }

  /** Package-private (keyed by a symbol `.` does not export): makes a fully built MR reachable by its key. */
  [kInstallMkey](mr: IbMr): void {
    this.#setMkey(mr.lkey, mr);
  }

  get #umemOptions(): { dmaMapPage: boolean } {
    return { dmaMapPage: this.odpDma === "pfn-list + dma_map_page" };
  }

  #odpOps(get: () => IbMr | undefined): MmuIntervalNotifierOps {
    return {
      invalidate: (sub, range, curSeq) => {
        const mr = get();
        return mr === undefined ? true : mlx5IbInvalidateRange(this, mr, sub, range, curSeq);
      },
      liveTranslations: (_sub, start, end) => {
        const mr = get();
        return mr === undefined ? 0 : mttLiveEntries(mr, start, end);
      },
    };
  }

  #regOdp(pd: IbPd, mm: Mm, addr: number, length: number, access: number): IbMr | number {
    const ref: { mr?: IbMr } = {};
    const key = this.#newKey();
    const odp = ibUmemOdpGet(this.dev, mm, addr, length, access, this.#odpOps(() => ref.mr), `${this.bdf}.mr${hex(key)}`, this.#umemOptions);
    if (typeof odp === "number") return odp;
    const mr = new IbMr({ pd, key, addr, length, access, mm, odp, mttStart: odp.start, mttEntries: (odp.end - odp.start) / PAGE_SIZE });
    ref.mr = mr;
    odp.private = mr;
    const ret = mlx5IbInitOdpMr(this, mr);
    if (ret < 0) {
      ibUmemOdpRelease(odp);
      return ret;
    }
    this.#setMkey(key, mr);
    return mr;
  }

  #regImplicit(pd: IbPd, mm: Mm, access: number): IbMr | number {
    const key = this.#newKey();
    const root = ibUmemOdpAllocImplicit(this.dev, mm, access, `${this.bdf}.imr${hex(key)}`);
    if (typeof root === "number") return root;
    const mr = new IbMr({ pd, key, addr: 0, length: TASK_SIZE, access, mm, odp: root, implicit: true, mttStart: 0, mttEntries: 0 });
    root.private = mr;
    mr.enabled = true;
    this.#setMkey(key, mr);
    return mr;
  }

  /** Package-private (keyed by a symbol `.` does not export): implicit_get_child_mr's allocation: a child umem over 1 GiB block `idx` and its MTT mkey. */
  [kCreateImplicitChild](imr: IbMr, idx: number): IbMr | number {
    const root = imr.odp;
    if (root === undefined) return -RdmaErrno.EINVAL;
    const key = this.#newKey();
    const ref: { mr?: IbMr } = {};
    const start = idx * MLX5_IMR_MTT_SIZE;
    const odp = ibUmemOdpAllocChild(root, start, MLX5_IMR_MTT_SIZE, this.#odpOps(() => ref.mr), `${this.bdf}.imr${hex(imr.lkey)}.child${idx}`, this.#umemOptions);
    if (typeof odp === "number") return odp;
    const child = new IbMr({ pd: imr.pd, key, addr: start, length: MLX5_IMR_MTT_SIZE, access: imr.access, mm: imr.mm, odp, parent: imr, mttStart: start, mttEntries: MLX5_IMR_MTT_SIZE / PAGE_SIZE });
    ref.mr = child;
    child.enabled = true;
    odp.private = child;
    this.#setMkey(key, child);
    return child;
  }

  /** Package-private (keyed by a symbol `.` does not export): the queued destruction of an implicit child left with no mapped page. */
  [kDestroyUnusedImplicitChild](child: IbMr): void {
    const imr = child.parent;
    const odp = child.odp;
    if (imr === undefined || odp === undefined || child.deregistered || odp.npages !== 0) return;
    const idx = Math.floor(child.addr / MLX5_IMR_MTT_SIZE);
    imr.children.delete(idx);
    this.#destroyMr(child);
  }

  #regPinned(pd: IbPd, mm: Mm, addr: number, length: number, access: number): IbMr | number {
    const start = Math.floor(addr / PAGE_SIZE) * PAGE_SIZE;
    const end = Math.ceil((addr + length) / PAGE_SIZE) * PAGE_SIZE;
    const n = (end - start) / PAGE_SIZE;
    const writable = (access & IB_ACCESS_WRITABLE) !== 0;
    const sys = mm.sys;
    const pfns = new Uint32Array(n);
    // pin_user_pages(FOLL_LONGTERM [| FOLL_WRITE]): fault each page in, take a reference.
    let pinned = 0;
    const unpin = (): void => {
      for (let j = 0; j < pinned; j++) sys.unpinPage(pfns[j] ?? 0);
    };
    mm.mmapReadLock();
    try {
      for (; pinned < n; pinned++) {
        const a = start + pinned * PAGE_SIZE;
        if ((mm.handleMmFault(a, writable ? FAULT_FLAG_WRITE : 0) & VM_FAULT_ERROR) !== 0) {
          unpin();
          return -RdmaErrno.EFAULT;
        }
        const pte = mm.pteAt(a);
        const pfn = pte?.pfn ?? 0;
        const ram = pte !== undefined && (pte.kind === PteKind.PRESENT || pte.kind === PteKind.ZERO) && (sys.managed(pfn) || pfn === sys.zeroPfn);
        if (!ram) {
          unpin();
          return -RdmaErrno.EFAULT;
        }
        sys.pinPage(pfn);
        pfns[pinned] = pfn;
      }
    } finally {
      mm.mmapReadUnlock();
    }
    const key = this.#newKey();
    const dev = this.dev;
    const state = new DmaIovaState();
    const useIova = dmaIovaTryAlloc(dev, state, ((pfns[0] ?? 0) * PAGE_SIZE) as PhysAddr, n * PAGE_SIZE);
    const umem: IbUmemPinned = { mm, pfns, state: useIova ? state : undefined };
    const mr = new IbMr({ pd, key, addr, length, access, mm, pinned: umem, mttStart: start, mttEntries: n });
    const perm = MLX5_IB_MTT_READ + (writable ? MLX5_IB_MTT_WRITE : 0);
    for (let j = 0; j < n; j++) {
      const phys = (pfns[j] ?? 0) * PAGE_SIZE;
      let dma: number;
      if (useIova) {
        if (dmaIovaLink(dev, state, unsafePhysAddr(phys), j * PAGE_SIZE, PAGE_SIZE, BIDIR, 0) !== 0) {
          this.#unmapPinned(mr, j);
          unpin();
          return -RdmaErrno.ENOMEM;
        }
        dma = state.addr + j * PAGE_SIZE;
      } else {
        dma = dmaMapPhys(dev, unsafePhysAddr(phys), PAGE_SIZE, BIDIR, 0);
        if (dmaMappingError(dev, unsafeDmaAddr(dma)) !== 0) {
          this.#unmapPinned(mr, j);
          unpin();
          return -RdmaErrno.ENOMEM;
        }
      }
      mr.mtt[j] = dma + perm;
    }
    if (useIova) dmaIovaSync(dev, state, 0, n * PAGE_SIZE);
    this.counters.add(RdmaCounter.PinnedPages, n);
    this.counters.add(RdmaCounter.UmrPosts);
    this.counters.add(RdmaCounter.MttWrites, n);
    mr.enabled = true;
    this.#setMkey(key, mr);
    return mr;
  }

  /** Undoes the DMA mapping of the first `count` pages of a pinned MR. */
  #unmapPinned(mr: IbMr, count: number): void {
    const umem = mr.pinned;
    if (umem === undefined) return;
    if (umem.state !== undefined) {
      if (count > 0 || umem.state.size > 0) dmaIovaDestroy(this.dev, umem.state, count * PAGE_SIZE, BIDIR, 0);
    } else {
      for (let j = 0; j < count; j++) {
        const e = mr.mtt[j] ?? 0;
        dmaUnmapPhys(this.dev, unsafeDmaAddr(e - (e % 4)), PAGE_SIZE, BIDIR, 0);
      }
    }
    mr.mtt.fill(0, 0, count);
  }

  /**
   * ibv_dereg_mr: disable the mkey, then release the umem: an ODP MR unmaps every page (dirtying written
   * ones) and removes its notifier; an implicit MR destroys its children; a pinned MR unmaps and unpins.
   * -EINVAL for an MR already deregistered.
   */
  deregMr(mr: IbMr): number {
    if (!(mr instanceof IbMr) || mr.parent !== undefined) throw new RdmaInputError("ib_dereg_mr", "mr", mr, "a user MR of this NIC");
    if (mr.deregistered || this[kLookupMkey](mr.lkey) !== mr) return -RdmaErrno.EINVAL;
    const busy = dmabufMrDeregBusy(mr);
    if (busy !== 0) return busy;
    if (mr.implicit) {
      for (const c of [...mr.children.values()]) this.#destroyMr(c);
      mr.children.clear();
    }
    this.#destroyMr(mr);
    return 0;
  }

  #destroyMr(mr: IbMr): void {
    mr.enabled = false;
    mr.deregistered = true;
    this.#deleteMkey(mr.lkey);
    const odp = mr.odp;
    if (odp !== undefined) {
      mr.mtt.fill(0);
      ibUmemOdpRelease(odp);
    } else if (mr.pinned !== undefined) {
      this.#unmapPinned(mr, mr.mtt.length);
      for (const pfn of mr.pinned.pfns) mr.pinned.mm.sys.unpinPage(pfn);
    } else if (mr.dmabuf !== undefined) {
      mlx5DmabufMrRelease(mr);
    } else if (mr.mixed !== undefined) {
      mr.mtt.fill(0);
      mr.mixed.release();
    }
  }

  /**
   * Package-private (keyed by a symbol `.` does not export): registration of an MR built outside this file (regMixedMr): `make` gets a new key and
   * returns the MR (inserted, enabled by `make`) or a negative errno (nothing inserted).
   */
  [kAdoptMkey](make: (key: number) => IbMr | number): IbMr | number {
    const mr = make(this.#newKey());
    if (typeof mr !== "number") this.#setMkey(mr.lkey, mr);
    return mr;
  }

  // ---- driver workqueue --------------------------------------------------------------------------
  /** Package-private (keyed by a symbol `.` does not export): a scratch array of at least `n` DMA addresses (the batched map's output). */
  [kRunScratch](n: number): Float64Array {
    if (this.#scratch.length < n) this.#scratch = new Float64Array(n);
    return this.#scratch;
  }

  /**
   * Package-private (keyed by a symbol `.` does not export): the NIC's staging buffer for the payload of one WR (`len` bytes): reused while WRs keep the
   * same length. One WR at a time per NIC; nothing inside a WR posts another.
   */
  [kWqeBuffer](len: number): Uint8Array {
    if (this.#wqeBuf.length !== len) this.#wqeBuf = new Uint8Array(len);
    return this.#wqeBuf;
  }

  /** Package-private (keyed by a symbol `.` does not export): queue driver work (asynchronous prefetch, implicit child destruction). */
  [kQueueWork](fn: () => void): void {
    this.#work.push(fn);
  }

  /** Work items waiting on the driver's workqueue. */
  get pendingWork(): number {
    return this.#work.length;
  }

  /** flush_workqueue: run every queued work item (and what they queue) in order. */
  flushWork(): void {
    for (let w = this.#work.shift(); w !== undefined; w = this.#work.shift()) w();
  }

  /** ibv_advise_mr (see mlx5IbAdviseMr). */
  adviseMr(pd: IbPd, advice: number, flags: number, sgList: readonly IbAdviseSge[]): number {
    return mlx5IbAdviseMr(this, pd, advice, flags, sgList);
  }

  // ---- the hardware: MTT walk, page faults, DMA through the fabric --------------------------------
  /**
   * The mkey check of an access of [va, va + len) by `pd` needing `need`: the MR, or undefined when the
   * hardware refuses it (no such key, other PD, disabled, outside the MR, missing access rights).
   */
  checkMkey(key: number, pd: IbPd, va: number, len: number, need: NicAccess): IbMr | undefined {
    const mr = this[kLookupMkey](key);
    if (mr === undefined || mr.parent !== undefined || !mr.enabled || mr.pd !== pd) return undefined;
    if (!Number.isSafeInteger(va) || va < mr.addr || va + len > mr.addr + mr.length) return undefined;
    const flag = ACCESS_FLAG[need];
    if (flag !== 0 && (mr.access & flag) === 0) return undefined;
    return mr;
  }

  /**
   * One device access of `buf.length` bytes at `va` of an MR already checked by checkMkey: each page's
   * MTT entry is read; an ODP MR whose entry is absent or too weak raises a page fault (the driver's
   * pagefault_mr over the rest of the access) and the access is replayed; the bytes go through the
   * fabric at the translated DMA address. `write` says which way the bytes go (an atomic reads, then
   * writes, with the rights of REMOTE_ATOMIC).
   */
  access(mr: IbMr, va: number, buf: Uint8Array, need: NicAccess, write: boolean = ACCESS_WRITES[need]): NicAccessResult {
    const perm = need === NicAccess.REMOTE_ATOMIC ? MLX5_IB_MTT_READ | MLX5_IB_MTT_WRITE : write ? MLX5_IB_MTT_WRITE : MLX5_IB_MTT_READ;
    const len = buf.length;
    // The MR's kind, read once per access: the dma-buf and mixed-MR hooks run only when `hooked`.
    const dmabuf = mr.dmabuf;
    const mixed = mr.mixed;
    const hooked = dmabuf !== undefined || mixed !== undefined;
    const odp = mr.odp !== undefined || (hooked && (dmabuf?.kind === "dynamic" || mixed !== undefined));
    let pos = 0;
    let replays = 0;
    while (pos < len) {
      const at = va + pos;
      // `x >>> 0` is x modulo 2^32 exactly for a safe integer, so its low bits are x's: the page offset
      // and the MTT permission bits without a floating-point remainder (addresses pass 2^32).
      const inPage = (at >>> 0) & (PAGE_SIZE - 1);
      const n = Math.min(PAGE_SIZE - inPage, len - pos);
      const m = mr.implicit ? mr.children.get(Math.floor(at / MLX5_IMR_MTT_SIZE)) : mr;
      const e = m === undefined ? 0 : (m.mtt[Math.floor((at - m.mttStart) / PAGE_SIZE)] ?? 0);
      const bits = (e >>> 0) & 3;
      if ((bits & perm) !== perm) {
        if (!odp || replays >= MAX_REPLAYS) return NicAccessResult.PROTECTION;
        replays++;
        const ret = this.#pageFault(mr, at, va + len - at);
        if (ret < 0) return NicAccessResult.FAULT_FAILED;
        this.stats.replays++;
        continue;
      }
      replays = 0;
      const chunk = n === len ? buf : buf.subarray(pos, pos + n);
      if (hooked && dmabuf !== undefined) ibUmemDmabufDeviceAccess(dmabuf);
      try {
        if (write) this.endpoint.dmaWrite(unsafeDmaAddr(e - bits + inPage), chunk);
        else this.endpoint.dmaReadInto(unsafeDmaAddr(e - bits + inPage), chunk);
      } catch (err) {
        if (err instanceof PcieAccessError) return NicAccessResult.IOMMU_FAULT;
        throw err;
      }
      if (hooked && mixed !== undefined) mixed.deviceAccess(at);
      pos += n;
    }
    return NicAccessResult.OK;
  }

  /**
   * A page-fault event for [va, va + bcnt) of `mr`: the EQE, the work item, pagefault_mr (a writable MR
   * asks for write access whatever the access was: mlx5 does), the resume. Returns pages mapped or -errno.
   */
  #pageFault(mr: IbMr, va: number, bcnt: number): number {
    const c = this.costs;
    this.stats.pageFaultEvents++;
    this.counters.add(RdmaCounter.OdpPageFaultEvents);
    this.clock.advance(c.faultEventNs + c.faultWorkDispatchNs);
    // pagefault_single_data_segment: a dmabuf MR faults through pagefault_dmabuf_mr (the whole MR).
    let ret: number;
    if (mr.dmabuf !== undefined) {
      this.counters.add(RdmaDmabufCounter.DmabufMrFaults);
      ret = pagefaultDmabufMr(this, mr, 0);
    } else if (mr.mixed !== undefined) {
      ret = mr.mixed.pageFault(va, bcnt);
    } else {
      ret = pagefaultMr(this, mr, va, bcnt, 0);
    }
    this.clock.advance(c.faultResumeNs);
    if (ret < 0) {
      this.stats.faultErrors++;
      this.counters.add(RdmaCounter.OdpFaultErrors);
    }
    return ret;
  }

  /** Host bytes of every MTT of this NIC (8 per page of MR). */
  get mttBytes(): number {
    let n = 0;
    for (const m of this.#mkeys.values()) n += m.mtt.byteLength;
    return n;
  }
}
