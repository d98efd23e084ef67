// `@dmasim/dma/internal`: what the packages that rebuild kernel DMA-API implementations on top of this
// one need (scatterlist's dma_map_sg, the block layer's DMA iterator), and drivers must not touch.
// These are the iommu-dma and swiotlb pieces the kernel's own implementations call directly
// (iommu_dma_map_sg allocates one IOVA and calls iommu_map itself); the API a driver uses is `.`.
export {
  archSyncDmaForCpu,
  archSyncDmaForDevice,
  devUseSwiotlb,
  dmaInfoToProt,
  dmaMapPhysUntracked,
  dmaSyncSingleForCpuUntracked,
  dmaSyncSingleForDeviceUntracked,
  dmaUnmapPhysUntracked,
  iommuDmaAllocIovaForDevice,
  iommuDmaFreeIovaForDevice,
  iommuDmaSyncSingleForCpu,
  iommuDmaSyncSingleForDevice,
  iommuDmaUnmap,
  iommuIovaToPhys,
  iommuMap,
  iommuSyncMap,
  iommuUnmap,
  isSwiotlbBuffer,
  swiotlbSyncSingleForCpu,
  swiotlbSyncSingleForDevice,
} from "./consumer-internals.js";
export { dmaApiSlice } from "./api-trace.js";
