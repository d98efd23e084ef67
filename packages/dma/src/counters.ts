import { combineCounters, counterNamesOf, defineCounters } from "@dmasim/trace";
import { MemoryCounter } from "@dmasim/memory";
import { IommuCounter } from "@dmasim/iommu";
import { PcieP2pCounter } from "@dmasim/pcie-p2p";

/**
 * The DMA layer's counters (IOVA allocator, flush queue, swiotlb, CPU caches, DMA API calls), at
 * indices 40..71 of the counter array (28 used).
 */
export const DmaCounter = defineCounters(40, [
  "IovaAllocCache",
  "IovaAllocTree",
  "IovaAllocFail",
  "IovaFreeCache",
  "IovaFreeTree",
  "IovaCacheFlushes",
  "FlushQueueEntries",
  "FlushQueueFlushes",
  "FlushQueueFullFlushes",
  "SwiotlbSlotsAllocated",
  "SwiotlbSlotsFreed",
  "SwiotlbBounceBytes",
  "SwiotlbAllocFail",
  "CacheLinesWrittenBack",
  "CacheLinesInvalidated",
  "DmaMapCalls",
  "DmaUnmapCalls",
  "DmaSyncCalls",
  "DmaIovaTryAllocs",
  "DmaIovaLinks",
  "DmaIovaSyncs",
  "DmaIovaUnlinks",
  "DmaIovaDestroys",
  "DmaMappingErrors",
  "DmaBookkeepingBytesAllocated",
  "DmaBookkeepingBytesFreed",
  "DmaDebugErrors",
  "P2pStateLookups",
]);

/** Every counter of a platform: the blocks of memory, iommu, pcie-p2p and dma. */
export const Counter = combineCounters(MemoryCounter, IommuCounter, PcieP2pCounter, DmaCounter);
export type Counter = (typeof Counter)[keyof typeof Counter];
/** The name of any counter a DMA kernel's platform counts (memory, IOMMU, fabric and DMA blocks). */
export type CounterName = keyof typeof Counter;

/** Every counter name of a platform, in index order (for cost profiles and option schemas). */
export const counterNames: readonly CounterName[] = counterNamesOf(Counter).filter((n): n is CounterName => n !== undefined);
