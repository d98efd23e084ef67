import { combineCounters, defineCounters } from "@dmasim/trace";
import { MemoryCounter } from "@dmasim/memory";
import { IommuCounter } from "@dmasim/iommu";

/** The PCIe fabric's counters (TLPs and bytes per path), at indices 32..39 of the counter array. */
export const PcieP2pCounter = defineCounters(32, [
  "TlpsToMemory",
  "BytesToMemory",
  "TlpsPeerViaSwitch",
  "BytesPeerViaSwitch",
  "TlpsPeerViaHostBridge",
  "BytesPeerViaHostBridge",
  "UnsupportedRequests",
  "PrivateMemoryBlocked",
]);

/** Every counter this package sees: memory's, the IOMMU's and its own. */
export const Counter = combineCounters(MemoryCounter, IommuCounter, PcieP2pCounter);
export type Counter = (typeof Counter)[keyof typeof Counter];
