import { combineCounters, defineCounters } from "@dmasim/trace";
import { Counter as DmaLayerCounter } from "@dmasim/dma";

/**
 * The dma-buf layer's counters, at indices 96..111 of the counter array (13 used) (the dma block ends at 67,
 * 68..95 are left to the layers between, the RDMA NIC has 112..127).
 */
export const DmaBufCounter = defineCounters(96, [
  "DmaBufExports",
  "DmaBufAttaches",
  "DmaBufMaps",
  "DmaBufUnmaps",
  "DmaBufInvalidations",
  "DmaBufFenceWaits",
  "DmaBufFenceWaitNs",
  "DmaBufMigrations",
  "DmaBufMigratedBytes",
  "DmaBufRevokes",
  "DmaBufDebugErrors",
  "DmaBufPhysListBytes",
  "DmaBufCopyNs",
]);

/** Every counter the dma-buf layer sees: the layers below and its own block. */
export const Counter = combineCounters(DmaLayerCounter, DmaBufCounter);
