import type { IommuIotlbGather as PtGather } from "@dmasim/iommu/internal";
import { Counter } from "../counters.js";
import { DMA_BIT_MASK_32 } from "./constants.js";
import type { IovaDomain } from "./domain.js";
import { checkCount, checkCpu, IovaError } from "./errors.js";
import type { FlushQueue } from "./flush-queue.js";

/** The part of dev->iommu that IOVA allocation reads and writes. */
export interface IommuDmaDeviceState {
  /** pci_32bit_workaround: set for PCI devices; cleared for good after the first failure below 4 GiB. */
  pci32bitWorkaround: boolean;
}

/** struct iommu_dma_cookie, reduced to what IOVA allocation and release need. */
export interface IommuDmaCookie {
  readonly iovad: IovaDomain;
  /** The flush queue of lazy mode; undefined in strict mode. */
  readonly fq: FlushQueue | undefined;
  /**
   * The gather __iommu_dma_unmap fills with iommu_unmap_fast and empties with iommu_iotlb_sync (strict) or
   * by queueing its freelist (lazy). The kernel's is on the stack; one per cookie here, reused by every
   * unmap of the device, so that an unmap builds no object.
   */
  readonly iotlbGather: PtGather;
}

/** struct iommu_iotlb_gather, as far as iommu_dma_free_iova reads it. */
export interface IommuIotlbGather {
  /** True when the unmap deferred its IOTLB invalidation to the flush queue. */
  readonly queued: boolean;
  /** Page-table pages the unmap detached (opaque); released with the IOVA. */
  readonly freelist: unknown;
}

/** iova_align: rounds `size` bytes up to the granule. */
export function iovaAlign(iovad: IovaDomain, size: number): number {
  return Math.ceil(size / iovad.granule) * iovad.granule;
}

/**
 * iommu_dma_alloc_iova (drivers/iommu/dma-iommu.c): an IOVA for `size` bytes at or below
 * min(dmaLimit, apertureEnd). While `dev.pci32bitWorkaround` holds, a device that could use more
 * than 32 bits first gets addresses below 4 GiB (without flushing the caches); the first failure
 * there clears the flag for good and the allocation moves to the full limit, flushing the caches if
 * need be. Returns the IOVA, or 0 when the space is exhausted (or the fail_iova site fails the call).
 *
 * `dmaLimit` is the device's DMA mask; masks wider than 53 bits are fine (they are clamped by the
 * aperture end, itself a safe integer).
 */
export function iommuDmaAllocIova(
  cookie: IommuDmaCookie,
  dev: IommuDmaDeviceState,
  size: number,
  dmaLimit: number,
  apertureEnd: number,
  cpu: number,
): number {
  const iovad = cookie.iovad;
  // The usual valid call passes one combined test; anything else gets the precise checks, in order.
  if (
    !(
      Number.isSafeInteger(size) &&
      size >= 1 &&
      Number.isInteger(dmaLimit) &&
      dmaLimit >= 0 &&
      Number.isSafeInteger(apertureEnd) &&
      apertureEnd >= 0 &&
      Number.isInteger(cpu) &&
      cpu >= 0 &&
      cpu < iovad.cpus
    )
  ) {
    checkAllocArgs(size, dmaLimit, apertureEnd, cpu, iovad.cpus);
  }
  // Fault injection, where fail_iommu sits in iommu_range_alloc: one draw per allocation, before the
  // 32-bit attempt (so an injected failure does not clear pci_32bit_workaround).
  const fail = iovad.failAlloc;
  if (fail.armed && fail.shouldFail(size)) {
    iovad.trace.counters.add(Counter.IovaAllocFail);
    return 0;
  }
  const granule = iovad.granule;
  const len = Math.ceil(size / granule);
  const limit = Math.min(dmaLimit, apertureEnd);
  if (limit > DMA_BIT_MASK_32 && dev.pci32bitWorkaround) {
    const pfn = iovad.allocIovaFast(len, Math.floor(DMA_BIT_MASK_32 / granule), false, cpu);
    if (pfn !== 0) return pfn * granule;
    dev.pci32bitWorkaround = false;
  }
  const limitPfn = Math.floor(limit / granule);
  if (limitPfn < 1) return 0;
  return iovad.allocIovaFast(len, limitPfn, true, cpu) * granule;
}

/** iommu_dma_alloc_iova's precise checks, in order; out of line so that the allocation's bytecode stays small for V8's inlining budget. */
function checkAllocArgs(size: number, dmaLimit: number, apertureEnd: number, cpu: number, cpus: number): void {
  checkCount("size", size, 1);
  if (!(dmaLimit >= 0) || !Number.isInteger(dmaLimit)) {
    throw new IovaError("dmaLimit", dmaLimit, "a DMA mask: an integer >= 0");
  }
  checkCount("apertureEnd", apertureEnd, 0);
  checkCpu(cpu, cpus);
}

/**
 * iommu_dma_free_iova: with a gather whose unmap was queued (lazy mode), the IOVA waits in the flush
 * queue; otherwise it goes straight back through free_iova_fast.
 */
export function iommuDmaFreeIova(
  cookie: IommuDmaCookie,
  iova: number,
  size: number,
  cpu: number,
  gather?: IommuIotlbGather,
): void {
  const iovad = cookie.iovad;
  const granule = iovad.granule;
  // Alignment on the low 32 bits (the granule is a power of two below 2^32; `>>> 0` keeps the low bits of
  // an integer exactly): a floating-point `%` is a library call for every IOVA above 2^31.
  if (!(Number.isSafeInteger(iova) && iova >= 1 && Number.isSafeInteger(size) && size >= 1 && ((iova >>> 0) & (granule - 1)) === 0)) {
    refuseFreeArgs(iova, size, granule);
  }
  const pfn = iova / granule;
  const pages = Math.ceil(size / granule);
  if (gather?.queued === true) {
    if (cookie.fq === undefined) {
      throw new IovaError("gather.queued", true, "false: this cookie has no flush queue (strict mode)");
    }
    cookie.fq.queueIova(pfn, pages, gather.freelist, cpu);
  } else {
    iovad.freeIovaFast(pfn, pages, cpu);
  }
}

/** iommu_dma_free_iova's precise checks, in order (the IOVA's alignment last); always throws. */
function refuseFreeArgs(iova: number, size: number, granule: number): never {
  checkCount("iova", iova, 1);
  checkCount("size", size, 1);
  throw new IovaError("iova", iova, `a multiple of the granule (${granule})`);
}
