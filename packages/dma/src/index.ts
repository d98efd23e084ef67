export { createDmaKernel, DmaKernel } from "./kernel.js";
export { FAIL_IOVA } from "./iova/index.js";
export { FAIL_SWIOTLB } from "./swiotlb/index.js";
export type { DmaKernelOptions, IommuMode, KernelLogLine, ShutdownReport, UnbindReport } from "./kernel.js";
export { DmaDevice } from "./device.js";
export type { DmaDeviceOptions, DmaOps } from "./device.js";
export {
  CACHELINE_SIZE,
  DMA_ATTR_ALL,
  DMA_ATTR_ALLOC_SINGLE_PAGES,
  DMA_ATTR_DEBUGGING_IGNORE_CACHELINES,
  DMA_ATTR_FORCE_CONTIGUOUS,
  DMA_ATTR_MMIO,
  DMA_ATTR_NO_KERNEL_MAPPING,
  DMA_ATTR_NO_WARN,
  DMA_ATTR_PRIVILEGED,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_ATTR_WEAK_ORDERING,
  DMA_ATTR_WRITE_COMBINE,
  DMA_BIT_MASK,
  DMA_MAPPING_ERROR,
  DmaDirection,
  dmaAddr,
  unsafeDmaAddr,
  dmaDirectionName,
  Errno,
  errnoName,
} from "./constants.js";
export type { DmaAddr } from "./constants.js";
export { DmaConfigError, DmaInputError, DmaOptionsError, DmaStateError } from "./errors.js";
export { dmaMaxMappingSize, dmaOptMappingSize, iovaRcacheRange } from "./opt-mapping-size.js";
export { DMA_FAULT_SITES, costOverridesSchema, costProfileNameSchema, dmaDeviceOptionsSchema, dmaKernelOptionsSchema, faultInjectSchema, iommuModeSchema } from "./options.js";
export {
  DMA_IOVA_STATE_BYTES,
  DmaIovaState,
  dmaIovaDestroy,
  dmaIovaFree,
  dmaIovaLink,
  dmaIovaSize,
  dmaIovaSync,
  dmaIovaTryAlloc,
  dmaIovaUnlink,
  dmaUseIova,
} from "./two-step.js";
export {
  dmaGetCacheAlignment,
  dmaGetMask,
  dmaGetMaxSegSize,
  dmaGetMergeBoundary,
  dmaGetSegBoundary,
  dmaMapPage,
  dmaMapPhys,
  dmaMapResource,
  dmaMappingError,
  dmaNeedUnmap,
  dmaSetCoherentMask,
  dmaSetMask,
  dmaSetMaskAndCoherent,
  dmaSetMaxSegSize,
  dmaSetMinAlignMask,
  dmaSetSegBoundary,
  dmaSyncSingleForCpu,
  dmaSyncSingleForDevice,
  dmaUnmapPage,
  dmaUnmapPhys,
  dmaUnmapResource,
} from "./mapping.js";
export { dmaAllocCoherent, dmaFreeCoherent } from "./coherent.js";
export type { DmaCoherentBuffer } from "./coherent.js";
export { PciP2pdmaMapState, pciP2pdmaBusAddrMap, pciP2pdmaState, p2pdmaProviderOf } from "./p2p.js";
export { dmaClassifyRange } from "./classify.js";
export type { DmaMemoryKind, DmaMemoryRun } from "./classify.js";
export { physToDma, dmaToPhys, dmaCapable } from "./direct-api.js";
export { DmaDebugError } from "./debug/errors.js";
export type { DmaDebugCheck, DmaDebugReport } from "./debug/errors.js";
export type { DebugCheckerOptions, DebugEntry, DebugEntryType, DebugFinding, DebugMode } from "./debug/checker.js";
export { ARCH_DMA_MINALIGN_DEFAULT, KMALLOC_CACHE_SIZES, dmaKmallocSizeAligned, kmallocSizeRoundup } from "./kmalloc.js";
export { costProfile, defaultCostProfile, priceCounters, priceCounts } from "./costs.js";
export type { CostLine, CostOverrides, CostProfile, CostReport, CostRow } from "./costs.js";
export { COST_PROFILE_DESCRIPTIONS, COST_PROFILE_NAMES, DEFAULT_COST_PROFILE, SHARED_RESOURCES, costProfiles, isCostProfileName } from "./cost-profiles.js";
export type { CostProfileName, SharedResource } from "./cost-profiles.js";
export { CpuCache } from "./cache/index.js";
export type { CpuCacheOptions } from "./cache/index.js";
export { SwiotlbPool, IO_TLB_SEGSIZE, IO_TLB_SIZE } from "./swiotlb/index.js";
export type { SwiotlbStats } from "./swiotlb/index.js";
export { IovaDomain, FlushQueue, IOVA_FQ_SIZE, IOVA_FQ_TIMEOUT_NS, IOVA_MAG_SIZE, IOVA_RANGE_CACHE_MAX_SIZE } from "./iova/index.js";
export type { IovaRange } from "./iova/index.js";
export { DmaDebugChecker } from "./debug/checker.js";
export type { UnmapRef } from "./debug/checker.js";
export { Counter, DmaCounter, counterNames } from "./counters.js";
export type {
  DmaApiEvent,
  DmaDebugEvent,
  DmaEvent,
  FlushQueueFlushEvent,
  FlushQueueReleaseEvent,
  IovaAllocEvent,
  IovaFreeEvent,
  IovaPath,
  SwiotlbBounceEvent,
  TraceEvent,
} from "./events.js";
export type { CounterName } from "./counters.js";
export { modelThroughput } from "./contention.js";
export type { ResourceLoad, ThroughputInput, ThroughputResult } from "./contention.js";
