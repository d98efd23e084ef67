/**
 * swiotlb geometry (include/linux/swiotlb.h). A slot ("slab") is the allocation unit; a mapping is a run
 * of contiguous slots that never crosses a segment, which caps one bounce buffer at 256 KiB.
 */
export const IO_TLB_SHIFT = 11;
/** Bytes in one slot (2 KiB): the allocation unit of a bounce buffer. */
export const IO_TLB_SIZE = 1 << IO_TLB_SHIFT;
/** Slots in one segment (128): a bounce buffer never crosses a segment, so it is at most 256 KiB. */
export const IO_TLB_SEGSIZE = 128;
/** Default pool size (IO_TLB_DEFAULT_SIZE). */
export const IO_TLB_DEFAULT_SIZE = 64 * 1024 * 1024;
/** Largest bounce buffer for a device with no min_align_mask: one whole segment. */
export const IO_TLB_SEGMENT_BYTES = IO_TLB_SIZE * IO_TLB_SEGSIZE;
/** Marks a slot with no original address (INVALID_PHYS_ADDR in the kernel). */
export const INVALID_PHYS_ADDR = -1;

/** nr_slots(): slots needed to hold `bytes`. */
export function nrSlots(bytes: number): number {
  return Math.ceil(bytes / IO_TLB_SIZE);
}

/**
 * The fault-injection site of swiotlb slot allocation (`trace.faults.attr(FAIL_SWIOTLB)`): the map then
 * fails as with a full pool ("swiotlb buffer is full").
 */
export const FAIL_SWIOTLB = "fail_swiotlb";
