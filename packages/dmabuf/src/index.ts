export { DMA_IOVA_USE_SWIOTLB_BIT, DmaBufErrno, DmaResvUsage, MAX_SCHEDULE_TIMEOUT, MAX_SG_ENT_SZ } from "./constants.js";
export { Counter, DmaBufCounter } from "./counters.js";
export { DmaBufDebug, DmaBufDebugError } from "./debug.js";
export type { DmaBufCheck, DmaBufDebugMode, DmaBufDebugReport } from "./debug.js";
export { DmaBufInputError, DmaBufStateError } from "./errors.js";
export { DmaFence, DmaResv } from "./resv.js";
export { DmaBufSystem } from "./system.js";
export type { DmaBufCostLine, DmaBufCostReport, DmaBufSystemOptions, DmaBufVersion } from "./system.js";
export {
  DmaBuf,
  DmaBufAttachment,
  dmaBufAttach,
  dmaBufAttachRevocable,
  dmaBufDetach,
  dmaBufDynamicAttach,
  dmaBufExport,
  dmaBufInvalidateMappings,
  dmaBufInvalidatedMappings,
  dmaBufMapAttachment,
  dmaBufMapAttachmentUnlocked,
  dmaBufMapPhysList,
  dmaBufMoveNotify,
  dmaBufPin,
  dmaBufPut,
  dmaBufUnmapAttachment,
  dmaBufUnmapAttachmentUnlocked,
  dmaBufUnmapPhysList,
  dmaBufUnpin,
  getDmaBuf,
} from "./dma-buf.js";
export type { DmaBufAttachOps, DmaBufExportInfo, DmaBufOps } from "./dma-buf.js";
export { dmaBufFreeSgt, dmaBufPhysVecToSgt } from "./mapping-helpers.js";
export type { DmaBufPhysVec, PhysVecToSgtFlavour } from "./mapping-helpers.js";
export {
  DmaBufPhysList,
  DmaBufPhysListDma,
  PhysListDmaMode,
  dmaBufPhysListAlloc,
  dmaBufPhysListDmaFree,
  dmaBufPhysListDmaMap,
  dmaBufPhysListDmaUnlink,
  dmaBufPhysListDmaUnmap,
  dmaBufPhysListSet,
  physListBytes,
} from "./phys-list.js";
export { dmaBufDeviceRead, dmaBufDeviceWrite } from "./device-access.js";
export type { DmaBufDeviceMapping } from "./device-access.js";
export { SystemHeap } from "./exporters/system-heap.js";
export { GpuVramExporter } from "./exporters/gpu-vram.js";
export type { GpuPlacement, GpuVramOptions } from "./exporters/gpu-vram.js";
export { VFIO_PCI_ROM_REGION_INDEX, VfioPciCoreDevice } from "./exporters/vfio-pci.js";
export type { VfioDeviceFeatureDmaBuf, VfioRegionDmaRange, VfioRevokeResult } from "./exporters/vfio-pci.js";
export { DmaBufImportMap } from "./import-map.js";
export type { DmaBufImportMapType } from "./import-map.js";
export { DmaBufImporter } from "./importer.js";
export type { DmaBufImporterOptions } from "./importer.js";
export { dmaBufMappingComparison, dmaBufMappingComparisonTable } from "./compare.js";
export type { DmaBufMappingComparisonRow } from "./compare.js";
export type { DmaBufEvent, DmaBufInvalidateEvent, DmaBufMapEvent, DmaBufMappingKind, DmaBufMoveEvent, DmaBufPlaceEvent, DmaBufPlacement, DmaBufRevokeEvent, DmaBufUnmapEvent, TraceEvent } from "./events.js";
