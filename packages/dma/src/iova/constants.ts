/**
 * Constants of drivers/iommu/iova.c and drivers/iommu/dma-iommu.c, with their kernel names.
 * Times are virtual nanoseconds.
 */

/** IOVA_RANGE_CACHE_MAX_SIZE: range caches exist for orders 0..5 (1..32 granules). */
export const IOVA_RANGE_CACHE_MAX_SIZE = 6;
/** IOVA_MAG_SIZE: 127 PFNs, so that a magazine with its size and next pointer fills 1 KiB. */
export const IOVA_MAG_SIZE = 127;
/** IOVA_DEPOT_DELAY: the depot gives back one surplus magazine every 100 ms. */
export const IOVA_DEPOT_DELAY_NS = 100_000_000;
/** IOVA_FQ_SIZE: ring slots per CPU (one stays empty, so 255 entries fit). */
export const IOVA_FQ_SIZE = 256;
/** IOVA_FQ_TIMEOUT: 10 ms after the first queued entry, a flush frees everything. */
export const IOVA_FQ_TIMEOUT_NS = 10_000_000;
/** DMA_BIT_MASK(32). */
export const DMA_BIT_MASK_32 = 0xffff_ffff;
/** IOVA_ANCHOR: the sentinel node above every usable PFN (~0UL upstream). */
export const IOVA_ANCHOR = Number.MAX_SAFE_INTEGER;
/**
 * The fault-injection site of IOVA allocation (`trace.faults.attr(FAIL_IOVA)`), as fail_iommu fails
 * iommu_range_alloc: iommu_dma_alloc_iova then returns 0, the "no IOVA space" answer.
 */
export const FAIL_IOVA = "fail_iova";
