export { iova, unsafeIova, SZ_4K, SZ_2M, SZ_1G } from "./iova.js";
export type { Iova } from "./iova.js";
export { IommuProt, IOMMU_PROT_MASK, protToString } from "./prot.js";
export { IommuError, IommuInputError } from "./errors.js";
export type { IommuErrorCode } from "./errors.js";
export type { IommuFault } from "./fault.js";
export { Iommu } from "./iommu.js";
export type { IommuOptions, IotlbInfo } from "./iommu.js";
export { FAIL_IO_PGTABLE, IommuDomain, MAX_PHYS } from "./domain.js";
export type { DomainType, IommuUnit, PtPageList, MapResult, UnmapResult } from "./domain.js";
export { Counter, IommuCounter } from "./counters.js";
export type {
  Access,
  FaultReason,
  InvalidationScope,
  IommuEvent,
  IommuFaultEvent,
  IommuMapEvent,
  IommuPtAllocEvent,
  IommuPtFreeEvent,
  IommuUnmapEvent,
  IotlbFillEvent,
  IotlbInvalidateEvent,
  IotlbLookupEvent,
  IotlbLookupResult,
  IotlbSyncMapEvent,
  TraceEvent,
} from "./events.js";
