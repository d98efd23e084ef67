export { PAGE_SHIFT, PAGE_SIZE, KiB, MiB, GiB, TiB, MAX_READ_BYTES, physAddr, unsafePhysAddr, pfnOf, pfnToPhys, isPageAligned } from "./addresses.js";
export type { PhysAddr } from "./addresses.js";
export {
  MemoryError,
  AddressError,
  UnmappedAddressError,
  MmioNoBackingError,
  RegionOverlapError,
  OutOfMemoryError,
  PageStateError,
} from "./errors.js";
export type { MemoryErrorCode } from "./errors.js";
export { PageFlag, PAGE_FLAG_MASK, pageFlagNames } from "./page-flags.js";
export { SparseStore } from "./sparse-store.js";
export { patternBytes } from "./pattern.js";
export { SECTION_PAGES } from "./page-descriptors.js";
// Built by PhysicalMemory only: exported as types, so their constructors are not part of the API.
export type { PageDescriptors, PageRange, PageRangeKind } from "./page-descriptors.js";
export type { PageAllocator } from "./page-allocator.js";
export type { AllocPagesOptions, FreeRun } from "./page-allocator.js";
export { PhysicalMemory } from "./physical-memory.js";
export type { MmioOptions, PhysicalMemoryOptions, RamRangeSpec } from "./physical-memory.js";
export type { RegionInfo, RegionKind } from "./regions.js";
export { Counter, MemoryCounter } from "./counters.js";
