export { SG_ENTRY_BYTES, SG_MAX_NENTS, SG_MAX_SINGLE_ALLOC, SG_NO_SEGMENT_LIMIT, SG_TABLE_BYTES, SgDmaFlag } from "./constants.js";
export { ScatterlistBusyError, ScatterlistError, ScatterlistNoMemError } from "./errors.js";
export {
  SgTable,
  sgAllocTable,
  sgChainEntries,
  sgDmaAddress,
  sgDmaIsBounced,
  sgDmaIsBusAddress,
  sgDmaIsSwiotlb,
  sgDmaLen,
  sgFreeTable,
  sgOffset,
  sgPage,
  sgPhys,
  sgSetPage,
  sgSetPhys,
} from "./sg-table.js";
export type { SgMapPath, SgMapping, SgMappingClassic, SgMappingPerSegment, SgMappingTwoStep } from "./sg-table.js";
export { sgAllocTableFromPages, sgAllocTableFromPagesSegment } from "./from-pages.js";
export type { PageList } from "./from-pages.js";
export { forEachSg, forEachSgtableDmaSg, forEachSgtableSg, sgtableDmaSegments } from "./iter.js";
export type { SgVisitor } from "./iter.js";
export { dmaMapSg, dmaMapSgtable, dmaUnmapSg, dmaUnmapSgtable } from "./map.js";
export type { SgMapOptions } from "./map.js";
export type { SgInteriorPolicy } from "./paths/two-step.js";
export { dmaSyncSgForCpu, dmaSyncSgForDevice, dmaSyncSgtableForCpu, dmaSyncSgtableForDevice } from "./sync.js";
