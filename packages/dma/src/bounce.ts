import {
  isSwiotlbActive,
  isSwiotlbBuffer,
  swiotlbPoolMapSingle as poolMap,
  swiotlbPoolSyncForCpu as poolSyncForCpu,
  swiotlbPoolSyncForDevice as poolSyncForDevice,
  swiotlbPoolUnmapSingle as poolUnmap,
  swiotlbZeroPadding,
} from "./swiotlb/index.js";
import { DMA_ATTR_NO_WARN, DMA_ATTR_SKIP_CPU_SYNC, DmaDirection } from "./constants.js";
import type { DmaDevice } from "./device.js";
import { dmaKmallocSizeAligned } from "./kmalloc.js";
import type { PhysAddr } from "@dmasim/memory";

// The seams between the mapping paths and the two things that move bytes for them: swiotlb bounce
// buffers and CPU cache maintenance. Device first, as in the kernel.

// is_swiotlb_active / is_swiotlb_buffer need nothing of the DMA layer: one function each, swiotlb's.
export { isSwiotlbActive, isSwiotlbBuffer };

// swiotlb's bounce copies are CPU memcpy()s (swiotlb_bounce in kernel/dma/swiotlb.c): they read the
// original buffer through the CPU cache and write it through the cache. The pool copies memory to memory,
// so these seams make memory agree with the cache first: dirty lines of the source are written back
// before a copy out of the original buffer, and the original's lines are dropped (a dirty line that sticks
// out of the range is written back first, keeping the CPU's neighbouring bytes) before a copy into it.
// Without this a driver's CPU store still sitting in the cache would never reach the bounce slot, and a
// CPU load after the copy back would return stale cached bytes, on coherent and non-coherent devices alike.

function beforeCopyFromOrig(dev: DmaDevice, orig: number, size: number): void {
  const kernel = dev.kernel;
  if (size > 0 && kernel.cpuCache.lines > 0 && kernel.memory.isRam(orig as PhysAddr, size)) kernel.cpuCache.snoopDeviceRead(orig as PhysAddr, size);
}

function beforeCopyToOrig(dev: DmaDevice, tlb: number, size: number): void {
  const kernel = dev.kernel;
  if (size === 0 || kernel.cpuCache.lines === 0) return;
  const orig = origOf(dev, tlb);
  if (orig !== undefined && kernel.memory.isRam(orig as PhysAddr, size)) kernel.cpuCache.snoopDeviceWrite(orig as PhysAddr, size);
}

function origOf(dev: DmaDevice, tlb: number): number | undefined {
  return dev.kernel.swiotlb?.origAddrOf(dev, tlb as PhysAddr);
}

/** swiotlb_tbl_map_single on the current CPU's area; a negative value on failure (pool full or absent). */
export function swiotlbTblMapSingle(dev: DmaDevice, orig: number, size: number, allocAlignMask: number, dir: DmaDirection, attrs: number): number {
  beforeCopyFromOrig(dev, orig, size);
  const tlb = poolMap(dev, orig, size, allocAlignMask, dir, attrs, dev.kernel.cpu);
  if (tlb >= 0) dev.dmaSkipSync = false;
  // swiotlb_tbl_map_single (kernel/dma/swiotlb.c) stays quiet about a full pool under DMA_ATTR_NO_WARN.
  else if ((attrs & DMA_ATTR_NO_WARN) === 0) dev.kernel.log(dev, `swiotlb buffer is full (sz: ${size} bytes)`);
  return tlb;
}

export function swiotlbTblUnmapSingle(dev: DmaDevice, tlb: number, size: number, dir: DmaDirection, attrs: number): void {
  if ((attrs & DMA_ATTR_SKIP_CPU_SYNC) === 0 && dir !== DmaDirection.TO_DEVICE) beforeCopyToOrig(dev, tlb, size);
  poolUnmap(dev, tlb, size, dir, attrs);
}

/**
 * swiotlb_sync_single_for_cpu: copies the slot back to the original buffer for FROM_DEVICE and BIDIRECTIONAL
 * (dma_sync_single_for_cpu of a bounced mapping).
 */
export function swiotlbSyncSingleForCpu(dev: DmaDevice, tlb: number, size: number, dir: DmaDirection): void {
  if (dir === DmaDirection.FROM_DEVICE || dir === DmaDirection.BIDIRECTIONAL) beforeCopyToOrig(dev, tlb, size);
  poolSyncForCpu(dev, tlb, size, dir);
}

/**
 * swiotlb_sync_single_for_device: copies the original buffer into the slot for TO_DEVICE and BIDIRECTIONAL, after the
 * CPU's dirty lines reach memory.
 */
export function swiotlbSyncSingleForDevice(dev: DmaDevice, tlb: number, size: number, dir: DmaDirection): void {
  if (dir === DmaDirection.TO_DEVICE || dir === DmaDirection.BIDIRECTIONAL) {
    const orig = origOf(dev, tlb);
    if (orig !== undefined) beforeCopyFromOrig(dev, orig, size);
  }
  poolSyncForDevice(dev, tlb, size, dir);
}

export function zeroBouncePadding(dev: DmaDevice, tlb: number, size: number, granule: number): void {
  const pool = dev.kernel.swiotlb;
  if (pool !== undefined) swiotlbZeroPadding(pool, tlb, size, granule);
}

/**
 * dma_kmalloc_needs_bounce (include/linux/dma-map-ops.h): with CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC, a
 * non-coherent device's buffer that the CPU may read back (!dma_kmalloc_safe) and that may come from a
 * kmalloc cache not aligned to ARCH_DMA_MINALIGN (!dma_kmalloc_size_aligned) could share a cache line
 * with other kmalloc data, so it bounces.
 */
export function dmaKmallocNeedsBounce(dev: DmaDevice, size: number, dir: DmaDirection): boolean {
  const kernel = dev.kernel;
  if (!kernel.kmallocBounce || dev.coherent || dir === DmaDirection.TO_DEVICE) return false;
  return !dmaKmallocSizeAligned(size, kernel.archDmaMinalign);
}

/**
 * dev_use_swiotlb (drivers/iommu/dma-iommu.c): untrusted devices and the kmalloc rule bounce. Upstream
 * does not ask whether a pool exists: without one, iommu_dma_map_swiotlb refuses the unaligned mapping
 * ("DMA bounce buffers are inactive") instead of letting an untrusted device see the rest of the granule.
 * The kmalloc rule needs a pool to be in force at all (kmalloc keeps ARCH_DMA_MINALIGN without one).
 */
export function devUseSwiotlb(dev: DmaDevice, size: number, dir: DmaDirection): boolean {
  return dev.untrusted || (isSwiotlbActive(dev) && dmaKmallocNeedsBounce(dev, size, dir));
}

/** arch_sync_dma_for_device: write back (clean) the CPU cache so a non-coherent device reads memory. */
export function archSyncDmaForDevice(dev: DmaDevice, phys: number, size: number, dir: DmaDirection): void {
  dev.kernel.cpuCache.archSyncDmaForDevice(phys as PhysAddr, size, dir);
}

/** arch_sync_dma_for_cpu: invalidate lines the device may have written, so the CPU reads memory. */
export function archSyncDmaForCpu(dev: DmaDevice, phys: number, size: number, dir: DmaDirection): void {
  dev.kernel.cpuCache.archSyncDmaForCpu(phys as PhysAddr, size, dir);
}


