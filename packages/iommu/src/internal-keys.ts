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
