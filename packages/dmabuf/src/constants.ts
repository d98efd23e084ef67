import { pickErrno } from "@dmasim/trace";
import { PAGE_SIZE } from "@dmasim/memory";

/**
 * enum dma_resv_usage (include/linux/dma-resv.h), in kernel order: waiting on a usage waits for every
 * fence of that usage and of the ones before it. KERNEL is memory management (moves, clears), WRITE and
 * READ are implicit-sync users, BOOKKEEP is everything else (page-table updates, preemption fences).
 */
export const DmaResvUsage = {
  KERNEL: 0,
  WRITE: 1,
  READ: 2,
  BOOKKEEP: 3,
} as const;
export type DmaResvUsage = (typeof DmaResvUsage)[keyof typeof DmaResvUsage];

/** The errnos dmabuf returns (negated), as the kernel's values. */
export const DmaBufErrno = pickErrno("EPERM", "ENOMEM", "EBUSY", "ENODEV", "EINVAL", "EDEADLK", "EOVERFLOW", "EOPNOTSUPP", "ETIMEDOUT");

/** MAX_SCHEDULE_TIMEOUT: wait without a limit. */
export const MAX_SCHEDULE_TIMEOUT = Number.POSITIVE_INFINITY;

/**
 * MAX_SG_ENT_SZ (drivers/dma-buf/dma-buf-mapping.c, 7.x): the longest DMA segment one sg entry carries,
 * ALIGN_DOWN(UINT_MAX, PAGE_SIZE). 6.19 used UINT_MAX itself.
 */
export const MAX_SG_ENT_SZ = Math.floor(0xffffffff / PAGE_SIZE) * PAGE_SIZE;

/**
 * DMA_IOVA_USE_SWIOTLB: bit 63 of a dma_iova_state's size. VFIO refuses a total length with it set
 * (dma_iova_try_alloc would WARN). Bit 63 is not a safe integer, so dmasim refuses any total of 2^63 or
 * more as that case.
 */
export const DMA_IOVA_USE_SWIOTLB_BIT = 2 ** 63;
