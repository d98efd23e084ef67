import { combineCounters, defineCounters } from "@dmasim/trace";
import { MemoryCounter } from "@dmasim/memory";

/** The IOMMU's counters (page tables, IOTLB, faults), at indices 8..31 of the counter array (19 used). */
export const IommuCounter = defineCounters(8, [
  "IommuMapCalls",
  "IommuUnmapCalls",
  "PteWrites",
  "PteClears",
  "PtPagesAllocated",
  "PtPagesFreed",
  "PtWalks",
  "PtWalkLevels",
  "IotlbHits",
  "IotlbMisses",
  "IotlbEvictions",
  "IotlbStaleHits",
  "IotlbInvalRange",
  "IotlbInvalDomain",
  "IotlbInvalGlobal",
  "IotlbSyncMap",
  "IommuFaults",
  "IotlbInvalDevice",
  "PtPagesPendingFree",
]);

/** Every counter this package sees: memory's and its own. */
export const Counter = combineCounters(MemoryCounter, IommuCounter);
export type Counter = (typeof Counter)[keyof typeof Counter];
