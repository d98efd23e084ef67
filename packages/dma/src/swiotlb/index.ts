export {
  INVALID_PHYS_ADDR,
  IO_TLB_DEFAULT_SIZE,
  IO_TLB_SEGMENT_BYTES,
  IO_TLB_SEGSIZE,
  IO_TLB_SHIFT,
  IO_TLB_SIZE,
  nrSlots,
  FAIL_SWIOTLB,
} from "./constants.js";
export { SwiotlbError } from "./errors.js";
export type { SwiotlbErrorCode } from "./errors.js";
export { SwiotlbPool } from "./pool.js";
export type { SwiotlbDevice, SwiotlbPoolOptions, SwiotlbStats } from "./pool.js";
export {
  isSwiotlbActive,
  isSwiotlbBuffer,
  swiotlbMaxMappingSize,
  swiotlbPoolSyncForCpu,
  swiotlbPoolSyncForDevice,
  swiotlbPoolMapSingle,
  swiotlbPoolUnmapSingle,
} from "./api.js";
export type { SwiotlbDeviceWithPool } from "./api.js";
export { swiotlbZeroPadding } from "./padding.js";
