import type { PhysAddr } from "@dmasim/memory";
import { devUseSwiotlb, archSyncDmaForCpu as archSyncForCpu, archSyncDmaForDevice as archSyncForDevice, isSwiotlbBuffer as isBounceBuffer, swiotlbSyncSingleForCpu as bounceSyncForCpu, swiotlbSyncSingleForDevice as bounceSyncForDevice } from "./bounce.js";
import type { DmaAddr, DmaDirection } from "./constants.js";
import type { DmaDevice } from "./device.js";
import { dmaDirectMapPhys, dmaDirectSyncSingleForCpu, dmaDirectSyncSingleForDevice, dmaDirectUnmapPhys } from "./direct.js";
import { checkDevice } from "./api-trace.js";
import { DmaInputError } from "./errors.js";
import { allocIova, cookieOf, freeIova, dmaInfoToProt, domainOf, iommuDmaMapPhys, iommuDmaSyncSingleForCpu as iommuSyncForCpu, iommuDmaSyncSingleForDevice as iommuSyncForDevice, iommuDmaUnmapPhys, iommuDmaUnmapRange, iommuMapNosync } from "./iommu-dma.js";
import type { Iova } from "@dmasim/iommu";
import { iotlbSync, unmapFast } from "@dmasim/iommu/internal";
import type { SwiotlbDeviceWithPool } from "./swiotlb/api.js";

// The pieces of iommu-dma that the kernel's own DMA-API implementations use directly (iommu_dma_map_sg
// in drivers/iommu/dma-iommu.c allocates one IOVA and calls iommu_map_sg itself). dmasim's consumer
// packages need the same to rebuild those paths faithfully; drivers should use the public API instead.
// Addresses are branded at this boundary as in the kernel's types: the iommu_dma_* calls take the
// dma_addr_t they handed out (`DmaAddr`), the iommu_* calls an IOVA of the domain (`Iova`), the cache and
// swiotlb calls a physical address (`PhysAddr`). Behind it they stay plain numbers.

function requireIommu(fn: string, dev: DmaDevice | undefined): asserts dev is DmaDevice {
  // Called once per run of a list by the consumers' map paths, which have checked the device at their own
  // entry: two field reads here (a missing dev reads as undefined), the class test only when they fail.
  if (dev?.ops === "iommu" && dev.bound) return;
  checkDevice(fn, dev);
  if (dev.ops !== "iommu") throw new DmaInputError(fn, "dev", dev.bdf, "a device that uses iommu-dma");
}

/**
 * iommu_dma_alloc_iova for a device: `size` bytes (granule multiple) under `dmaLimit`; 0 when none is
 * left. The cookie-level allocator it ends in is iova/dma-iova.ts's `iommuDmaAllocIova`.
 */
export function iommuDmaAllocIovaForDevice(dev: DmaDevice, size: number, dmaLimit: number): DmaAddr {
  requireIommu("iommu_dma_alloc_iova", dev);
  return allocIova(dev, size, dmaLimit) as DmaAddr;
}

/**
 * iommu_dma_free_iova for a device, without a flush queue: the IOVA is reusable at once (nothing may map
 * it). The cookie-level release is iova/dma-iova.ts's `iommuDmaFreeIova`.
 */
export function iommuDmaFreeIovaForDevice(dev: DmaDevice, iova: DmaAddr, size: number): void {
  requireIommu("iommu_dma_free_iova", dev);
  freeIova(dev, iova, size, "classic");
}

/** iommu_map without the trailing iotlb_sync_map: 0 or a negative errno; a refused map changes nothing. */
export function iommuMap(dev: DmaDevice, iova: Iova, phys: PhysAddr, size: number, prot: number): number {
  requireIommu("iommu_map", dev);
  return iommuMapNosync(dev, iova, phys, size, prot);
}

/**
 * iommu_unmap: clear [iova, iova+size) and invalidate the IOTLB for it before returning (the IOVA stays
 * allocated; the caller frees it). Returns the bytes unmapped.
 */
export function iommuUnmap(dev: DmaDevice, iova: Iova, size: number): number {
  requireIommu("iommu_unmap", dev);
  const domain = domainOf(dev);
  // iommu_unmap: iommu_unmap_fast into the device's gather, then iommu_iotlb_sync.
  const gather = cookieOf(dev).iotlbGather;
  const unmapped = domain[unmapFast](iova, size, gather);
  domain[iotlbSync](gather);
  return unmapped;
}

/**
 * The single-mapping paths under dma_map_phys, without dma-debug or the API's trace slice: what the
 * kernel's own map_sg implementations call per segment (iommu_dma_map_phys, dma_direct_map_phys).
 */
export function dmaMapPhysUntracked(dev: DmaDevice, phys: PhysAddr, size: number, dir: DmaDirection, attrs: number): DmaAddr {
  return dev.ops === "iommu" ? iommuDmaMapPhys(dev, phys, size, dir, attrs) : dmaDirectMapPhys(dev, phys, size, dir, attrs);
}

/** iommu_dma_unmap_phys / dma_direct_unmap_phys, without dma-debug. */
export function dmaUnmapPhysUntracked(dev: DmaDevice, addr: DmaAddr, size: number, dir: DmaDirection, attrs: number): void {
  if (dev.ops === "iommu") iommuDmaUnmapPhys(dev, addr, size, dir, attrs);
  else dmaDirectUnmapPhys(dev, addr, size, dir, attrs);
}

/** iommu_dma_sync_single_for_cpu / dma_direct_sync_single_for_cpu, without dma-debug. */
export function dmaSyncSingleForCpuUntracked(dev: DmaDevice, addr: DmaAddr, size: number, dir: DmaDirection): void {
  if (dev.ops === "iommu") iommuDmaSyncSingleForCpu(dev, addr, size, dir);
  else dmaDirectSyncSingleForCpu(dev, addr, size, dir);
}

/** iommu_dma_sync_single_for_device / dma_direct_sync_single_for_device, without dma-debug. */
export function dmaSyncSingleForDeviceUntracked(dev: DmaDevice, addr: DmaAddr, size: number, dir: DmaDirection): void {
  if (dev.ops === "iommu") iommuDmaSyncSingleForDevice(dev, addr, size, dir);
  else dmaDirectSyncSingleForDevice(dev, addr, size, dir);
}

/** iommu_sync_map over [iova, iova+size). */
export function iommuSyncMap(dev: DmaDevice, iova: Iova, size: number): void {
  requireIommu("iommu_sync_map", dev);
  domainOf(dev).iotlbSyncMap(iova, size);
}

/** iommu_iova_to_phys on the device's domain. */
export function iommuIovaToPhys(dev: DmaDevice, iova: Iova): PhysAddr | undefined {
  requireIommu("iommu_iova_to_phys", dev);
  return domainOf(dev).iovaToPhys(iova);
}

/**
 * __iommu_dma_unmap: unmap [dmaAddr, +size) widened to granules, invalidate (strict) or queue on the
 * flush queue (lazy), and free the IOVA.
 */
export function iommuDmaUnmap(dev: DmaDevice, dmaAddr: DmaAddr, size: number): void {
  requireIommu("__iommu_dma_unmap", dev);
  iommuDmaUnmapRange(dev, dmaAddr, size, true);
}

/** iommu_dma_sync_single_for_cpu: cache maintenance and bounce copy for the mapping at `dmaHandle`. */
export function iommuDmaSyncSingleForCpu(dev: DmaDevice, dmaHandle: DmaAddr, size: number, dir: DmaDirection): void {
  iommuSyncForCpu(dev, dmaHandle, size, dir);
}

/** iommu_dma_sync_single_for_device: bounce copy and cache maintenance for the mapping at `dmaHandle`. */
export function iommuDmaSyncSingleForDevice(dev: DmaDevice, dmaHandle: DmaAddr, size: number, dir: DmaDirection): void {
  iommuSyncForDevice(dev, dmaHandle, size, dir);
}

/** arch_sync_dma_for_device over [phys, phys+size) for a non-coherent device. */
export function archSyncDmaForDevice(dev: DmaDevice, phys: PhysAddr, size: number, dir: DmaDirection): void {
  archSyncForDevice(dev, phys, size, dir);
}

/** arch_sync_dma_for_cpu over [phys, phys+size) for a non-coherent device. */
export function archSyncDmaForCpu(dev: DmaDevice, phys: PhysAddr, size: number, dir: DmaDirection): void {
  archSyncForCpu(dev, phys, size, dir);
}

/** is_swiotlb_buffer: true when `phys` lies in the device's bounce pool. */
export function isSwiotlbBuffer(dev: SwiotlbDeviceWithPool, phys: PhysAddr): boolean {
  return isBounceBuffer(dev, phys);
}

/** swiotlb_sync_single_for_cpu: copy the bounce slot at `tlb` back to the original buffer. */
export function swiotlbSyncSingleForCpu(dev: DmaDevice, tlb: PhysAddr, size: number, dir: DmaDirection): void {
  bounceSyncForCpu(dev, tlb, size, dir);
}

/** swiotlb_sync_single_for_device: copy the original buffer into the bounce slot at `tlb`. */
export function swiotlbSyncSingleForDevice(dev: DmaDevice, tlb: PhysAddr, size: number, dir: DmaDirection): void {
  bounceSyncForDevice(dev, tlb, size, dir);
}

export { devUseSwiotlb, dmaInfoToProt };
