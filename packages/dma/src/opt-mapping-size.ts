import { checkDevice } from "./api-trace.js";
import { PAGE_SIZE } from "./constants.js";
import type { DmaDevice } from "./device.js";
import { IOVA_RANGE_CACHE_MAX_SIZE } from "./iova/index.js";
import { isSwiotlbActive, swiotlbMaxMappingSize } from "./swiotlb/index.js";

/**
 * iova_rcache_range() (drivers/iommu/iova.c): the largest allocation the IOVA range caches serve,
 * PAGE_SIZE << (IOVA_RANGE_CACHE_MAX_SIZE - 1) = 128 KiB. Larger IOVAs come from the rbtree every time.
 */
export function iovaRcacheRange(): number {
  return PAGE_SIZE * 2 ** (IOVA_RANGE_CACHE_MAX_SIZE - 1);
}

/**
 * dma_addressing_limited(): the device's mask (or its bus's limit) cannot reach all of RAM, so dma-direct
 * may have to bounce. The kernel compares with dma_get_required_mask(); the model with the top of RAM.
 */
function dmaAddressingLimited(dev: DmaDevice): boolean {
  const limit = dev.busDmaLimit === 0 ? dev.dmaMask : Math.min(dev.dmaMask, dev.busDmaLimit);
  let top = 0;
  for (const r of dev.kernel.memory.regions()) if (r.kind === "ram") top = Math.max(top, r.base + r.size - 1);
  return limit < top;
}

/**
 * dma_max_mapping_size() (kernel/dma/mapping.c): the largest single mapping the device can get. dma-direct
 * (dma_direct_max_mapping_size): swiotlb's limit when it may bounce (forced, or addressing limited);
 * iommu-dma (iommu_dma_max_mapping_size): swiotlb's limit for an untrusted device, which always bounces
 * partial granules. Infinity where the kernel says SIZE_MAX.
 */
export function dmaMaxMappingSize(dev: DmaDevice): number {
  checkDevice("dma_max_mapping_size", dev);
  const mayBounce = dev.ops === "iommu" ? dev.untrusted : dev.kernel.swiotlbForce || dmaAddressingLimited(dev);
  return mayBounce && isSwiotlbActive(dev) ? swiotlbMaxMappingSize(dev) : Infinity;
}

/**
 * dma_opt_mapping_size() (kernel/dma/mapping.c): the largest mapping that stays cheap. Behind iommu-dma
 * (use_dma_iommu) that is iommu_dma_opt_mapping_size() = iova_rcache_range(), 128 KiB, beyond which every
 * IOVA allocation walks the rbtree; otherwise no preference. Never more than dma_max_mapping_size().
 * Drivers cap their largest request with it (NVMe: max_hw_sectors).
 */
export function dmaOptMappingSize(dev: DmaDevice): number {
  checkDevice("dma_opt_mapping_size", dev);
  const opt = dev.ops === "iommu" ? iovaRcacheRange() : Infinity;
  return Math.min(dmaMaxMappingSize(dev), opt);
}
