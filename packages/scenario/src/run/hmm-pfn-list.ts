import { DmaDirection, dmaMapPhys, dmaMappingError, dmaUnmapPhys, unsafeDmaAddr } from "@dmasim/dma";
import type { DmaDevice } from "@dmasim/dma";
import {
  HMM_PFN_ERROR,
  HMM_PFN_REQ_FAULT,
  HMM_PFN_VALID,
  HMM_PFN_WRITE,
  HmmErrno,
  HmmRange,
  MmuIntervalNotifier,
  UserLock,
  hmmCheckMayProgram,
  hmmRangeFault,
  mmuIntervalNotifierInsert,
  mmuIntervalNotifierRemove,
  mmuIntervalReadBegin,
  mmuIntervalReadRetry,
  mmuIntervalSetSeq,
} from "@dmasim/hmm-odp";
import type { DmirrorFaultStep, Mm, MmuNotifierRange } from "@dmasim/hmm-odp";
import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import type { Endpoint } from "@dmasim/pcie-p2p";
import { DmasimStateError } from "@dmasim/trace";
import { unsafeIova } from "@dmasim/iommu";

const BIDIR = DmaDirection.BIDIRECTIONAL;
/** Attempts of the read_begin / hmm_range_fault / read_retry loop before giving up with -EBUSY. */
const MAX_ATTEMPTS = 64;

/**
 * A device driver mirroring [start, start + size) of a process the way drivers did before the two-step
 * API (an ODP/SVM driver of the 6.x era): hmm_range_fault into its own pfn list, then one
 * dma_map_page per faulted page, keeping a dma_addr_t per page; the invalidate callback
 * dma_unmap_page's every entry of the range. Each page costs its own IOVA allocation, PTE write and
 * IOTLB sync, and 8 bytes of DMA address besides the pfn list.
 */
export class PfnListMirror {
  readonly notifier = new MmuIntervalNotifier();
  readonly mutex = new UserLock("pfn-list.mutex");
  readonly pfns: Uint32Array;
  readonly flags: Uint16Array;
  /** The DMA address of each mapped page; NaN when the page is not mapped. */
  readonly dmaAddr: Float64Array;
  /** The frame each mapped page was mapped for, and the direction (DmaDirection) it was mapped with. */
  readonly mappedPfn: Uint32Array;
  readonly mappedDir: Uint8Array;
  readonly endpoint: Endpoint;
  /** Calls of the fault loop that programmed the device (one per device fault). */
  faults = 0;
  /** Attempts of the fault loop, retries included. */
  attempts = 0;
  /** Race injection: a function run at a step of every fault attempt (as dmirror's). */
  inject: Partial<Record<DmirrorFaultStep, () => void>> = {};
  #closed = false;

  constructor(
    readonly dev: DmaDevice,
    readonly mm: Mm,
    readonly start: number,
    readonly size: number,
  ) {
    const n = size / PAGE_SIZE;
    this.pfns = new Uint32Array(n);
    this.flags = new Uint16Array(n);
    this.dmaAddr = new Float64Array(n).fill(Number.NaN);
    this.mappedPfn = new Uint32Array(n);
    this.mappedDir = new Uint8Array(n);
    this.endpoint = dev.kernel.platform.endpoint(dev.bdf);
    this.notifier.owner = `${dev.bdf} pfn-list`;
    const ret = mmuIntervalNotifierInsert(this.notifier, mm, start, size, {
      invalidate: (sub, range, curSeq) => this.#invalidate(sub, range, curSeq),
      liveTranslations: (_sub, lo, hi) => this.liveTranslations(lo, hi),
    });
    if (ret !== 0) throw new DmasimStateError("EINVAL", `pfn-list driver on ${dev.bdf}: mmu_interval_notifier_insert returned ${ret}`);
  }

  #invalidate(sub: MmuIntervalNotifier, range: MmuNotifierRange, curSeq: number): boolean {
    this.mutex.lock();
    mmuIntervalSetSeq(sub, curSeq);
    this.#unmap(range.start, range.end);
    this.mutex.unlock();
    return true;
  }

  /** dma_unmap_page of every mapped page in [lo, hi). */
  #unmap(lo: number, hi: number): void {
    const first = Math.max(0, Math.floor((lo - this.start) / PAGE_SIZE));
    const last = Math.min(this.dmaAddr.length, Math.ceil((hi - this.start) / PAGE_SIZE));
    for (let i = first; i < last; i++) {
      const a = this.dmaAddr[i] ?? Number.NaN;
      if (Number.isNaN(a)) continue;
      dmaUnmapPhys(this.dev, unsafeDmaAddr(a), PAGE_SIZE, this.mappedDir[i] as DmaDirection, 0);
      this.dmaAddr[i] = Number.NaN;
    }
  }

  liveTranslations(lo: number, hi: number): number {
    let n = 0;
    const first = Math.max(0, Math.floor((lo - this.start) / PAGE_SIZE));
    const last = Math.min(this.dmaAddr.length, Math.ceil((hi - this.start) / PAGE_SIZE));
    for (let i = first; i < last; i++) if (!Number.isNaN(this.dmaAddr[i] ?? Number.NaN)) n++;
    return n;
  }

  /** The physical address the device reaches for virtual page `addr`, or undefined. */
  translate(addr: number): { phys: number } | undefined {
    const i = Math.floor((addr - this.start) / PAGE_SIZE);
    const a = this.dmaAddr[i];
    if (a === undefined || Number.isNaN(a)) return undefined;
    const phys = this.dev.ops === "iommu" ? this.dev.domain?.iovaToPhys(unsafeIova(a)) : a - this.dev.busOffset;
    return phys === undefined ? undefined : { phys };
  }

  /** The fault loop of the notifier protocol, then a dma_map_page per page whose frame changed. 0 or -errno. */
  fault(lo: number, hi: number): number {
    const range = new HmmRange({ notifier: this.notifier, start: lo, end: hi, pfns: this.pfns, flags: this.flags, index: (lo - this.start) / PAGE_SIZE, defaultFlags: HMM_PFN_REQ_FAULT });
    const inject = this.inject;
    range.onWalk = inject["in-hmm-range-fault"];
    let attempts = 0;
    for (;;) {
      if (++attempts > MAX_ATTEMPTS) return -HmmErrno.EBUSY;
      this.attempts++;
      range.notifierSeq = mmuIntervalReadBegin(this.notifier);
      inject["after-read-begin"]?.();
      this.mm.mmapReadLock();
      let ret: number;
      try {
        ret = hmmRangeFault(range);
      } finally {
        this.mm.mmapReadUnlock();
      }
      if (ret === -HmmErrno.EBUSY) continue;
      if (ret !== 0) return ret;
      inject["before-driver-lock"]?.();
      this.mutex.lock();
      // A thread injected here blocks on the lock the fault path holds: it runs at the unlock.
      const underLock = inject["before-read-retry"];
      if (underLock !== undefined) this.mutex.whenUnlocked(underLock);
      if (mmuIntervalReadRetry(this.notifier, range.notifierSeq, this.mutex)) {
        this.mutex.unlock();
        continue;
      }
      break;
    }
    try {
      hmmCheckMayProgram(this.notifier, this.mutex);
      this.faults++;
      for (let i = range.index; i < range.index + (hi - lo) / PAGE_SIZE; i++) {
        const f = this.flags[i] ?? 0;
        if ((f & HMM_PFN_ERROR) !== 0 || (f & HMM_PFN_VALID) === 0) return -HmmErrno.EFAULT;
        const pfn = this.pfns[i] ?? 0;
        // A read-only entry (the zero page, a COW-shared page) is mapped for the device to read only:
        // mapped BIDIRECTIONAL, the zero page under many addresses is an overlap dma-debug reports.
        const dir = (f & HMM_PFN_WRITE) !== 0 ? BIDIR : DmaDirection.TO_DEVICE;
        const old = this.dmaAddr[i] ?? Number.NaN;
        if (!Number.isNaN(old)) {
          if (this.mappedPfn[i] === pfn && this.mappedDir[i] === dir) continue;
          dmaUnmapPhys(this.dev, unsafeDmaAddr(old), PAGE_SIZE, this.mappedDir[i] as DmaDirection, 0);
        }
        const a = dmaMapPhys(this.dev, unsafePhysAddr(pfn * PAGE_SIZE), PAGE_SIZE, dir, 0);
        if (dmaMappingError(this.dev, a) !== 0) {
          this.dmaAddr[i] = Number.NaN;
          return -HmmErrno.ENOMEM;
        }
        this.dmaAddr[i] = a;
        this.mappedPfn[i] = pfn;
        this.mappedDir[i] = dir;
      }
      return 0;
    } finally {
      this.mutex.unlock();
    }
  }

  /** The device reads `buf.length` bytes at `addr`, faulting pages it has no translation for. 0 or -errno. */
  deviceRead(addr: number, buf: Uint8Array): number {
    let pos = 0;
    while (pos < buf.length) {
      const at = addr + pos;
      const i = Math.floor((at - this.start) / PAGE_SIZE);
      if (i < 0 || i >= this.dmaAddr.length) return -HmmErrno.EFAULT;
      const off = at % PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - off, buf.length - pos);
      this.mutex.lock();
      const a = this.dmaAddr[i] ?? Number.NaN;
      if (!Number.isNaN(a)) this.endpoint.dmaReadInto(unsafeDmaAddr(a + off), buf.subarray(pos, pos + n));
      this.mutex.unlock();
      if (Number.isNaN(a)) {
        // Fault the rest of the read in one go, as dmirror does.
        const end = Math.min(this.start + this.size, Math.ceil((addr + buf.length) / PAGE_SIZE) * PAGE_SIZE);
        const ret = this.fault(at - off, end);
        if (ret !== 0) return ret;
        continue;
      }
      pos += n;
    }
    this.mm.invalidations.deviceAccess();
    return 0;
  }

  /** Unbind: remove the notifier, unmap every page. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    mmuIntervalNotifierRemove(this.notifier);
    this.mutex.lock();
    this.#unmap(this.start, this.start + this.size);
    this.mutex.unlock();
  }
}
