import { IommuError, IommuProt, type Iova } from "@dmasim/iommu";
import { iotlbGatherDetach, iotlbSync, mapGranuleNoPhysProtCheck, unmapFast } from "@dmasim/iommu/internal";
import { Counter } from "./counters.js";
import {
  archSyncDmaForCpu,
  archSyncDmaForDevice,
  devUseSwiotlb,
  isSwiotlbActive,
  swiotlbSyncSingleForCpu,
  swiotlbSyncSingleForDevice,
  swiotlbTblMapSingle,
  swiotlbTblUnmapSingle,
  zeroBouncePadding,
} from "./bounce.js";
import {
  DMA_ATTR_MMIO,
  DMA_ATTR_PRIVILEGED,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_MAPPING_ERROR,
  DmaDirection,
  Errno,
} from "./constants.js";
import type { DmaAddr } from "./constants.js";
import type { DmaDevice } from "./device.js";
import { iommuDmaAllocIova, iommuDmaFreeIova } from "./iova/index.js";
import type { IommuDmaCookie, IommuIotlbGather } from "./iova/index.js";
import type { DmaEvent, IovaPath } from "./events.js";
import type { PhysAddr } from "@dmasim/memory";

// iommu-dma: the DMA API on top of a paging IOMMU domain (drivers/iommu/dma-iommu.c). Internal: the
// public entry points in mapping.ts and two-step.ts dispatch here when the device uses iommu-dma.

const PROT_RW = IommuProt.READ | IommuProt.WRITE;
// A module-local copy of the internal key read by every single-page map (see two-step-fast.ts for the figure).
const MAP_GRANULE_NO_PHYS_PROT_CHECK: typeof mapGranuleNoPhysProtCheck = mapGranuleNoPhysProtCheck;
// The same for the unmap path's keys (iommu_unmap_fast, iommu_iotlb_sync, the lazy splice).
const UNMAP_FAST: typeof unmapFast = unmapFast;
const IOTLB_SYNC: typeof iotlbSync = iotlbSync;
const IOTLB_GATHER_DETACH: typeof iotlbGatherDetach = iotlbGatherDetach;

// Module-local copies of the constants dma_info_to_prot reads: each use of `IommuProt.READ` or
// `DmaDirection.TO_DEVICE` is a module-variable load and a property load in the bytecode, and the
// bytecode size is what V8's inlining budget counts: dmaInfoToProt is 130 bytes of bytecode this way,
// 192 with the imported names (the classic pair's figure is at checkMapArgs in mapping.ts).
const PROT_READ = IommuProt.READ;
const PROT_WRITE = IommuProt.WRITE;
const PROT_CACHE = IommuProt.CACHE;
const PROT_MMIO = IommuProt.MMIO;
const PROT_PRIV = IommuProt.PRIV;
const ATTR_MMIO = DMA_ATTR_MMIO;
const ATTR_PRIVILEGED = DMA_ATTR_PRIVILEGED;
const DIR_BIDIRECTIONAL = DmaDirection.BIDIRECTIONAL;
const DIR_TO_DEVICE = DmaDirection.TO_DEVICE;
const DIR_FROM_DEVICE = DmaDirection.FROM_DEVICE;

/** 2^vaBits - 1 by vaBits (an IOMMU has at most 64): `**` on a variable is a library call on every map. */
const APERTURE_END = Array.from({ length: 65 }, (_, bits) => 2 ** bits - 1);

/** The cookie of a device known to use iommu-dma. */
export function cookieOf(dev: DmaDevice): IommuDmaCookie {
  const c = dev.cookie;
  if (c === undefined) throw new Error(`${dev.bdf} does not use iommu-dma`);
  return c;
}

export function domainOf(dev: DmaDevice): NonNullable<DmaDevice["domain"]> {
  const d = dev.domain;
  if (d === undefined) throw new Error(`${dev.bdf} has no IOMMU domain`);
  return d;
}

/**
 * iova_offset: the offset of `addr` inside its granule. For an integer >= 0 that is the low bits of its
 * low 32 (`>>> 0` keeps them exactly, and a granule divides 2^32); the floating-point `%` it saves is a
 * library call on any address above 2^31. Measured: dma_map_phys + dma_unmap_phys 28 % faster, the
 * two-step batch with dma-debug on about 10 % (interleaved A/B in one process, 16 rounds).
 */
export function iovaOffset(dev: DmaDevice, addr: number): number {
  const g = dev.granule;
  return addr >= 0 && addr === Math.floor(addr) ? (addr >>> 0) & (g - 1) : addr % g;
}

export function iovaAlignUp(dev: DmaDevice, size: number): number {
  const g = dev.granule;
  return Math.ceil(size / g) * g;
}

/** iova_unaligned: the range starts or ends inside a granule. */
export function iovaUnaligned(dev: DmaDevice, phys: number, size: number): boolean {
  return iovaOffset(dev, phys) !== 0 || iovaOffset(dev, size) !== 0;
}

/**
 * dma_info_to_prot: IOMMU_CACHE for coherent devices, PRIV for DMA_ATTR_PRIVILEGED, MMIO attributes
 * (instead of CACHE) for DMA_ATTR_MMIO, and read/write from the direction.
 */
export function dmaInfoToProt(dir: DmaDirection, coherent: boolean, attrs: number): number {
  let prot = 0;
  if ((attrs & ATTR_MMIO) !== 0) prot |= PROT_MMIO;
  else if (coherent) prot |= PROT_CACHE;
  if ((attrs & ATTR_PRIVILEGED) !== 0) prot |= PROT_PRIV;
  if (dir === DIR_BIDIRECTIONAL) return prot | PROT_READ | PROT_WRITE;
  if (dir === DIR_TO_DEVICE) return prot | PROT_READ;
  if (dir === DIR_FROM_DEVICE) return prot | PROT_WRITE;
  return 0; // DMA_NONE
}

/**
 * dev_use_swiotlb with the common answer first: a trusted coherent device never bounces here (the
 * kmalloc rule is for non-coherent devices only), so the bounce module is asked only otherwise.
 */
function useSwiotlb(dev: DmaDevice, size: number, dir: DmaDirection): boolean {
  return dev.untrusted || (!dev.coherent && devUseSwiotlb(dev, size, dir));
}

/** is_swiotlb_buffer, read straight from the kernel's pool (the common answer is "no pool hit"). */
function inSwiotlb(dev: DmaDevice, phys: number): boolean {
  return dev.kernel.swiotlb?.isSwiotlbBuffer(phys as PhysAddr) ?? false;
}

/**
 * iommu_dma_alloc_iova under the device's mask and its bus_dma_limit (min_not_zero, as upstream: a bus
 * that cannot carry the mask's top bits limits the IOVA too); 0 on failure.
 */
export function allocIova(dev: DmaDevice, size: number, dmaLimit: number, path: IovaPath = "classic"): number {
  const vaBits = domainOf(dev).iommu.vaBits;
  const apertureEnd = APERTURE_END[vaBits] ?? 2 ** vaBits - 1;
  const limit = dev.busDmaLimit > 0 ? Math.min(dmaLimit, dev.busDmaLimit) : dmaLimit;
  const kernel = dev.kernel;
  const iova = iommuDmaAllocIova(cookieOf(dev), dev.iommuState, size, limit, apertureEnd, kernel.cpu);
  if (iova !== 0 && kernel.trace.events.active) traceIovaAlloc(dev, iova, size, path);
  return iova;
}

/** The `iova.alloc` event, out of allocIova's bytecode (it runs only with a subscriber). */
function traceIovaAlloc(dev: DmaDevice, iova: number, size: number, path: IovaPath): void {
  const trace = dev.kernel.trace;
  trace.events.emit<DmaEvent>({ type: "iova.alloc", t: trace.clock.now, device: dev.bdf, iova: iova as Iova, size, path });
}

/**
 * iommu_dma_free_iova for a device: into the flush queue when `gather` says the unmap was queued, else
 * straight back to the allocator; traced as `iova.free`.
 */
export function freeIova(dev: DmaDevice, iova: number, size: number, path: IovaPath, gather?: IommuIotlbGather): void {
  const kernel = dev.kernel;
  iommuDmaFreeIova(cookieOf(dev), iova, size, kernel.cpu, gather);
  if (kernel.trace.events.active) traceIovaFree(dev, iova, size, path, gather?.queued === true);
}

/** The `iova.free` event, out of freeIova's bytecode (it runs only with a subscriber). */
function traceIovaFree(dev: DmaDevice, iova: number, size: number, path: IovaPath, queued: boolean): void {
  const trace = dev.kernel.trace;
  trace.events.emit<DmaEvent>({ type: "iova.free", t: trace.clock.now, device: dev.bdf, iova: iova as Iova, size, path, queued });
}

/**
 * iommu_map on a DMA domain: page-table writes, then iotlb_sync_map (what iommu_map adds over
 * iommu_map_nosync). Returns 0 or a negative errno; a refused map changes nothing.
 */
export function iommuMapNosync(dev: DmaDevice, iova: number, phys: number, size: number, prot: number): number {
  const domain = domainOf(dev);
  try {
    domain.map(iova as Iova, phys as PhysAddr, size, prot);
    return 0;
  } catch (e) {
    // Only the IOMMU's own refusals become errnos; anything else is a bug in the model and must surface.
    if (!(e instanceof IommuError)) throw e;
    if (e.code === "EEXIST") return -17;
    // A page-table page could not be allocated: the domain has already unmapped the part (iommu_map).
    if (e.code === "ENOMEM") return -Errno.ENOMEM;
    const g = dev.granule;
    const unaligned = iova % g !== 0 || phys % g !== 0 || size % g !== 0;
    // iommu_map (drivers/iommu/iommu.c) prints this before returning -EINVAL.
    if (unaligned) dev.kernel.log(dev, `iommu: unaligned: iova 0x${iova.toString(16)} pa ${phys < 0 ? String(phys) : `0x${phys.toString(16)}`} size 0x${size.toString(16)} min_pagesz 0x${g.toString(16)}`);
    else dev.kernel.log(dev, `iommu: map failed: ${e.message}`);
    return -Errno.EINVAL;
  }
}

/**
 * __iommu_dma_unmap: clears the page table for [dmaAddr, +size) (widened to granules) with
 * iommu_unmap_fast into the cookie's gather, then either iommu_iotlb_sync (strict: the IOTLB invalidated
 * and the freed page-table pages released now) or queues the IOVA with the gather's freelist on the flush
 * queue (lazy), and returns the IOVA to the allocator.
 */
export function iommuDmaUnmapRange(dev: DmaDevice, dmaAddr: number, size: number, free: boolean, path: IovaPath = "classic"): void {
  const domain = domainOf(dev);
  const cookie = cookieOf(dev);
  const off = iovaOffset(dev, dmaAddr);
  const iova = dmaAddr - off;
  const len = iovaAlignUp(dev, size + off);
  const gather = cookie.iotlbGather;
  const unmapped = domain[UNMAP_FAST](iova as Iova, len, gather);
  const queued = free && cookie.fq !== undefined;
  if (!queued) domain[IOTLB_SYNC](gather);
  // The flush queue's entry only when the IOVA waits there: strict unmaps build no object at all.
  if (free) freeIova(dev, iova, len, path, queued ? { queued, freelist: domain[IOTLB_GATHER_DETACH](gather) } : undefined);
  // Upstream WARNs right after the unmap and goes on; here the WARN comes last, because in dma-debug's
  // "throw" mode it throws, and thrown between the clearing and the invalidation it would leave the
  // IOTLB translating what the page table no longer holds.
  if (unmapped !== len) warnUnmappedShort(dev, unmapped, len, iova);
}

/** __iommu_dma_unmap's WARN_ON(unmapped != size), out of the unmap path's bytecode. */
function warnUnmappedShort(dev: DmaDevice, unmapped: number, len: number, iova: number): void {
  dev.kernel.debug.warnOnce(dev.bdf, "__iommu_dma_unmap", `WARN_ON(unmapped != size): unmapped ${unmapped} of ${len} bytes at IOVA 0x${iova.toString(16)}`);
}

/**
 * __iommu_dma_map: allocate an IOVA under `dmaMask`, map, sync. One IOTLB sync per call — the cost the
 * two-step API removes for multi-range mappings.
 */
export function iommuDmaMapRange(dev: DmaDevice, phys: number, size: number, prot: number, dmaMask: number): DmaAddr {
  const off = iovaOffset(dev, phys);
  if (dev.minAlignMask > dev.granule - 1) return warnUnsupportedAlignment(dev);
  const len = iovaAlignUp(dev, size + off);
  const iova = allocIova(dev, len, dmaMask);
  if (iova === 0) return DMA_MAPPING_ERROR;
  // One granule (every 4 KiB mapping) goes to the IOMMU's single-granule entry, which checks the IOVA and
  // the slot and builds no result object: phys - off is an aligned integer >= 0 and prot comes from
  // dma_info_to_prot, with READ or WRITE (tested: DMA_NONE gives none). Whatever it declines goes
  // through iommu_map, which gives the precise answer.
  const domain = domainOf(dev);
  const mapped = len === dev.granule && (prot & PROT_RW) !== 0 && domain[MAP_GRANULE_NO_PHYS_PROT_CHECK](iova, phys - off, prot) >= 0;
  if (!mapped && iommuMapNosync(dev, iova, phys - off, len, prot) !== 0) {
    freeIova(dev, iova, len, "classic");
    return DMA_MAPPING_ERROR;
  }
  domain.iotlbSyncMap(iova as Iova, len);
  return (iova + off) as DmaAddr;
}

/** __iommu_dma_map's refusal of a min_align_mask wider than the granule (out of the map path's bytecode). */
function warnUnsupportedAlignment(dev: DmaDevice): DmaAddr {
  dev.kernel.debug.warnOnce(dev.bdf, "__iommu_dma_map", "Unsupported alignment constraint");
  return DMA_MAPPING_ERROR;
}

/**
 * iommu_dma_map_swiotlb: bounce through a slot aligned to the IOVA granule, and for untrusted devices
 * zero the padding around the data inside the granule so the device cannot read stale kernel data.
 */
export function iommuDmaMapSwiotlb(dev: DmaDevice, phys: number, size: number, dir: DmaDirection, attrs: number): number {
  if (!isSwiotlbActive(dev)) {
    dev.kernel.logOnce(dev, "iommu_dma_map_swiotlb", "DMA bounce buffers are inactive, unable to map unaligned transaction.");
    return -1;
  }
  const tlb = swiotlbTblMapSingle(dev, phys, size, dev.granule - 1, dir, attrs);
  if (tlb < 0) return -1;
  if (dev.untrusted) zeroBouncePadding(dev, tlb, size, dev.granule);
  return tlb;
}

/** iommu_dma_map_phys (6.18). */
export function iommuDmaMapPhys(dev: DmaDevice, phys: number, size: number, dir: DmaDirection, attrs: number): DmaAddr {
  const coherent = dev.coherent;
  const prot = dmaInfoToProt(dir, coherent, attrs);
  let target = phys;
  if (useSwiotlb(dev, size, dir) && iovaUnaligned(dev, phys, size)) {
    if ((attrs & (DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT)) !== 0) return DMA_MAPPING_ERROR;
    target = iommuDmaMapSwiotlb(dev, phys, size, dir, attrs);
    if (target < 0) return DMA_MAPPING_ERROR;
  }
  if (!coherent && (attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO)) === 0) archSyncDmaForDevice(dev, target, size, dir);
  const iova = iommuDmaMapRange(dev, target, size, prot, dev.dmaMask);
  // Upstream asks is_swiotlb_buffer(phys); the model knows whether this call bounced, which also keeps a
  // failed map of memory that merely lies inside the pool from freeing someone else's slot.
  if (iova === DMA_MAPPING_ERROR && target !== phys) swiotlbTblUnmapSingle(dev, target, size, dir, attrs);
  return iova;
}

/** iommu_dma_unmap_phys (6.18). */
export function iommuDmaUnmapPhys(dev: DmaDevice, dmaHandle: number, size: number, dir: DmaDirection, attrs: number): void {
  if ((attrs & (DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT)) !== 0) {
    iommuDmaUnmapRange(dev, dmaHandle, size, true);
    return;
  }
  const phys = domainOf(dev).iovaToPhys(dmaHandle as Iova);
  if (phys === undefined) {
    warnUnmapTranslatesToNothing(dev, dmaHandle);
    return;
  }
  if (!dev.coherent && (attrs & DMA_ATTR_SKIP_CPU_SYNC) === 0) archSyncDmaForCpu(dev, phys, size, dir);
  iommuDmaUnmapRange(dev, dmaHandle, size, true);
  if (inSwiotlb(dev, phys)) swiotlbTblUnmapSingle(dev, phys, size, dir, attrs);
}

/** iommu_dma_unmap_phys's WARN_ON(!phys), out of the unmap path's bytecode. */
function warnUnmapTranslatesToNothing(dev: DmaDevice, dmaHandle: number): void {
  dev.kernel.debug.warnOnce(dev.bdf, "iommu_dma_unmap_phys", `WARN_ON(!phys): unmap of IOVA 0x${dmaHandle.toString(16)} that translates to nothing`);
}

/** iommu_dma_sync_single_for_cpu. */
export function iommuDmaSyncSingleForCpu(dev: DmaDevice, dmaHandle: number, size: number, dir: DmaDirection): void {
  if (dev.coherent && !useSwiotlb(dev, size, dir)) return;
  const phys = domainOf(dev).iovaToPhys(dmaHandle as Iova);
  if (phys === undefined) return;
  if (!dev.coherent) archSyncDmaForCpu(dev, phys, size, dir);
  if (inSwiotlb(dev, phys)) swiotlbSyncSingleForCpu(dev, phys, size, dir);
}

/** iommu_dma_sync_single_for_device. */
export function iommuDmaSyncSingleForDevice(dev: DmaDevice, dmaHandle: number, size: number, dir: DmaDirection): void {
  if (dev.coherent && !useSwiotlb(dev, size, dir)) return;
  const phys = domainOf(dev).iovaToPhys(dmaHandle as Iova);
  if (phys === undefined) return;
  if (inSwiotlb(dev, phys)) swiotlbSyncSingleForDevice(dev, phys, size, dir);
  if (!dev.coherent) archSyncDmaForDevice(dev, phys, size, dir);
}

/** Counts the page-descriptor lookups a path made (pfn_valid, is_pci_p2pdma_page, …). */
export function countPageLookup(dev: DmaDevice, n = 1): void {
  dev.kernel.trace.counters.add(Counter.PageDescLookups, n);
}
