// struct iommu_iotlb_gather (include/linux/iommu.h): what a run of iommu_unmap_fast calls leaves for
// the one iommu_iotlb_sync after them — the IOVA range to invalidate and the freed page-table pages.
// The caller owns it and reuses it (a DMA cookie owns one per device): no object per unmap.

/**
 * struct iommu_iotlb_gather: the range [start, end) that unmaps gathered (start > end when empty, as
 * iommu_iotlb_gather_init leaves it) and the page-table pages they detached (`iommu_pages_list`).
 * Exported by `@dmasim/iommu/internal` only; filled by `domain[unmapFast]`, emptied by
 * `domain[iotlbSync]` or `domain[iotlbGatherDetach]`.
 */
export class IommuIotlbGather {
  /** First IOVA gathered (Infinity when empty). */
  start = Infinity;
  /** End (exclusive) of the gathered IOVA range (0 when empty). */
  end = 0;
  /** Page-table pages detached by the gathered unmaps (table ids of the owner's page table). */
  readonly freelist: number[] = [];
  /** The domain whose unmaps filled the freelist; undefined while it is empty. */
  owner: object | undefined = undefined;

  /** An empty gather (iommu_iotlb_gather_init). */
  constructor() {
    // The end passes 2^31 (beyond a small integer) with the first unmap above 2 GiB: a double from
    // birth, so that the change of representation cannot deprecate the class of every gather made
    // before it, and code optimised on one gather deoptimise ("wrong map") on the next.
    this.end = 0.5;
    this.end = 0;
  }

  /** iommu_iotlb_gather_init. */
  init(): void {
    this.start = Infinity;
    this.end = 0;
    // A length store is a runtime call even on an empty array: only when there is something to drop.
    if (this.freelist.length !== 0) this.freelist.length = 0;
    this.owner = undefined;
  }

  /** True when nothing was gathered since the last init. */
  get empty(): boolean {
    return this.start >= this.end && this.freelist.length === 0;
  }
}
