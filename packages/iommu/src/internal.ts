// `@dmasim/iommu/internal`: what dmasim's own packages need from the IOMMU model beyond its API, and a
// user of the model must not touch: the keys of IommuDomain's internal members (the DMA layer's
// single-granule map, the page table, the constructor and the release hook of Iommu).
export { domainPageTable, domainReleased, mapGranuleNoPhysProtCheck, newIommuDomain } from "./internal-keys.js";
