import {
  archSyncDmaForCpu,
  archSyncDmaForDevice,
  dmaKmallocNeedsBounce,
  isSwiotlbActive,
  isSwiotlbBuffer,
  swiotlbSyncSingleForCpu,
  swiotlbSyncSingleForDevice,
  swiotlbTblMapSingle,
  swiotlbTblUnmapSingle,
} from "./bounce.js";
import { DMA_ATTR_MMIO, DMA_ATTR_REQUIRE_COHERENT, DMA_ATTR_SKIP_CPU_SYNC, DMA_MAPPING_ERROR } from "./constants.js";
import type { DmaAddr, DmaDirection } from "./constants.js";
import type { DmaDevice } from "./device.js";

// dma-direct (kernel/dma/direct.c, kernel/dma/direct.h): the device reaches memory by physical address
// plus the bus offset, and swiotlb bounces what it cannot reach. Internal: mapping.ts dispatches here.

/** phys_to_dma: add the dma-ranges offset. */
export function physToDma(dev: DmaDevice, phys: number): DmaAddr {
  return (phys + dev.busOffset) as DmaAddr;
}

/** dma_to_phys. */
export function dmaToPhys(dev: DmaDevice, addr: number): number {
  return addr - dev.busOffset;
}

/** min_not_zero(*dev->dma_mask, dev->bus_dma_limit). */
function dmaLimit(dev: DmaDevice): number {
  return dev.busDmaLimit === 0 ? dev.dmaMask : Math.min(dev.dmaMask, dev.busDmaLimit);
}

/** dma_capable: the whole range is addressable under the mask. */
export function dmaCapable(dev: DmaDevice, addr: number, size: number): boolean {
  if (addr < 0) return false;
  return addr + Math.max(size, 1) - 1 <= dmaLimit(dev);
}

function overflow(dev: DmaDevice, addr: number, size: number, what: string): DmaAddr {
  dev.kernel.log(dev, `${what} 0x${addr.toString(16)}+${size} overflow (mask ${dev.dmaMask.toString(16)}, bus limit ${dev.busDmaLimit.toString(16)}).`);
  return DMA_MAPPING_ERROR;
}

/** swiotlb_map: bounce, then check the bounce buffer itself is reachable. */
export function swiotlbMap(dev: DmaDevice, phys: number, size: number, dir: DmaDirection, attrs: number): DmaAddr {
  const tlb = swiotlbTblMapSingle(dev, phys, size, 0, dir, attrs);
  if (tlb < 0) return DMA_MAPPING_ERROR;
  const addr = physToDma(dev, tlb);
  if (!dmaCapable(dev, addr, size)) {
    swiotlbTblUnmapSingle(dev, tlb, size, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
    return overflow(dev, addr, size, "swiotlb addr");
  }
  if (!dev.coherent && (attrs & DMA_ATTR_SKIP_CPU_SYNC) === 0) archSyncDmaForDevice(dev, tlb, size, dir);
  return addr;
}

/** dma_direct_map_phys (6.18). */
export function dmaDirectMapPhys(dev: DmaDevice, phys: number, size: number, dir: DmaDirection, attrs: number): DmaAddr {
  if (dev.kernel.swiotlbForce) {
    if ((attrs & (DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT)) !== 0) return DMA_MAPPING_ERROR;
    return swiotlbMap(dev, phys, size, dir, attrs);
  }
  let addr: DmaAddr;
  if ((attrs & DMA_ATTR_MMIO) !== 0) {
    addr = phys as DmaAddr;
    if (!dmaCapable(dev, addr, size)) return overflow(dev, addr, size, "DMA addr");
  } else {
    addr = physToDma(dev, phys);
    if (!dmaCapable(dev, addr, size) || dmaKmallocNeedsBounce(dev, size, dir)) {
      if (isSwiotlbActive(dev) && (attrs & DMA_ATTR_REQUIRE_COHERENT) === 0) return swiotlbMap(dev, phys, size, dir, attrs);
      return overflow(dev, addr, size, "DMA addr");
    }
  }
  if (!dev.coherent && (attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO)) === 0) archSyncDmaForDevice(dev, phys, size, dir);
  return addr;
}

/** dma_direct_sync_single_for_cpu. */
export function dmaDirectSyncSingleForCpu(dev: DmaDevice, addr: number, size: number, dir: DmaDirection): void {
  const phys = dmaToPhys(dev, addr);
  if (!dev.coherent) archSyncDmaForCpu(dev, phys, size, dir);
  if (isSwiotlbBuffer(dev, phys)) swiotlbSyncSingleForCpu(dev, phys, size, dir);
}

/** dma_direct_sync_single_for_device. */
export function dmaDirectSyncSingleForDevice(dev: DmaDevice, addr: number, size: number, dir: DmaDirection): void {
  const phys = dmaToPhys(dev, addr);
  if (isSwiotlbBuffer(dev, phys)) swiotlbSyncSingleForDevice(dev, phys, size, dir);
  if (!dev.coherent) archSyncDmaForDevice(dev, phys, size, dir);
}

/**
 * dma_direct_unmap_phys (6.18): MMIO and REQUIRE_COHERENT mappings need nothing (uncached or coherent, never
 * bounced); memory is synced for the CPU and unbounced.
 */
export function dmaDirectUnmapPhys(dev: DmaDevice, addr: number, size: number, dir: DmaDirection, attrs: number): void {
  if ((attrs & (DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT)) !== 0) return;
  const phys = dmaToPhys(dev, addr);
  if ((attrs & DMA_ATTR_SKIP_CPU_SYNC) === 0) dmaDirectSyncSingleForCpu(dev, addr, size, dir);
  if (isSwiotlbBuffer(dev, phys)) swiotlbTblUnmapSingle(dev, phys, size, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
}
