// `@dmasim/iommu/internal`: what dmasim's own packages need from the IOMMU model beyond its API, and a
// user of the model must not touch: the keys of IommuDomain's internal members (the DMA layer's
// single-granule map, the kernel-shaped unmap with its gather, the page table, the constructor and the
// release hook of Iommu).
export { IommuIotlbGather } from "./gather.js";
export {
  domainPageTable,
  domainReleased,
  iotlbGatherDetach,
  iotlbSync,
  mapGranuleNoPhysProtCheck,
  newIommuDomain,
  unmapFast,
} from "./internal-keys.js";
