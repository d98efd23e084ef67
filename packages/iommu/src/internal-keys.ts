// The keys of IommuDomain's members that dmasim's own packages use and its users must not: symbols, so
// that no string-keyed public member carries them, exported by `@dmasim/iommu/internal` only (index.ts
// does not re-export this module).

/** `IommuDomain[domainPageTable]`: the IO page table of a paging domain (undefined otherwise); Iommu.translate walks it. */
export const domainPageTable: unique symbol = Symbol("IommuDomain.pageTable");

/**
 * `IommuDomain[mapGranuleNoPhysProtCheck](iova, phys, prot)`: the DMA layer's single-granule map, which
 * skips the phys and prot checks its caller has made (see the method in domain.ts).
 */
export const mapGranuleNoPhysProtCheck: unique symbol = Symbol("IommuDomain.mapGranuleNoPhysProtCheck");

/** `IommuDomain[domainReleased]()`: Iommu.freeDomain settles the domain's deferred accounting for good. */
export const domainReleased: unique symbol = Symbol("IommuDomain.released");

/** `IommuDomain[newIommuDomain](unit, id, type, ctx)`: the constructor, for Iommu.allocDomain. */
export const newIommuDomain: unique symbol = Symbol("IommuDomain.new");

/**
 * `IommuDomain[unmapFast](iova, size, gather)`: iommu_unmap_fast. Clears [iova, iova+size) as `unmap` does,
 * adds the range and the detached page-table pages to the caller's `IommuIotlbGather`, and returns the
 * bytes unmapped; no result object (see the method in domain.ts).
 */
export const unmapFast: unique symbol = Symbol("IommuDomain.unmapFast");

/** `IommuDomain[iotlbSync](gather)`: iommu_iotlb_sync: invalidate the gathered range, free the gathered pages, re-init the gather. */
export const iotlbSync: unique symbol = Symbol("IommuDomain.iotlbSync");

/**
 * `IommuDomain[iotlbGatherDetach](gather)`: the lazy path's splice of the gather's freelist into the flush
 * queue: the pages as a list for `releasePtPages` (undefined when none), and the gather re-initialised.
 */
export const iotlbGatherDetach: unique symbol = Symbol("IommuDomain.iotlbGatherDetach");
