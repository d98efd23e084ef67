import { Counter, type DmaAddr } from "@dmasim/dma";
import { dmaSyncSingleForCpuUntracked, dmaSyncSingleForDeviceUntracked } from "@dmasim/dma/internal";
import type { DmaDevice, DmaDirection } from "@dmasim/dma";
import { SgDmaFlag } from "./constants.js";
import { debugSyncSg } from "./debug.js";
import { checkSgDevice, checkSgTable } from "./check.js";
import { ScatterlistError } from "./errors.js";
import type { SgTable } from "./sg-table.js";
import { syncEntriesForCpu, syncEntriesForDevice } from "./util.js";

function checkSyncArgs(fn: string, dev: DmaDevice, table: SgTable, nents: number, dir: number): void {
  checkSgDevice(fn, dev);
  checkSgTable(fn, table);
  if (!Number.isSafeInteger(nents) || nents < 1 || nents > table.origNents) {
    throw new ScatterlistError("EINVAL", fn, "nents", nents, `1 to the table's ${table.origNents} entries`);
  }
  if (dir !== 0 && dir !== 1 && dir !== 2) throw new ScatterlistError("EINVAL", fn, "dir", dir, "DMA_BIDIRECTIONAL (0), DMA_TO_DEVICE (1) or DMA_FROM_DEVICE (2)");
  const m = table.mapping;
  if (m !== undefined && m.dev !== dev) throw new ScatterlistError("EINVAL", fn, "dev", dev.bdf, `the device the table was mapped for (${m.dev.bdf})`);
}

function sync(fn: string, dev: DmaDevice, table: SgTable, nents: number, dir: DmaDirection, toCpu: boolean): void {
  checkSyncArgs(fn, dev, table, nents, dir);
  const m = table.mapping;
  debugSyncSg(dev, table, nents, m?.mappedEnts ?? 0, dir, toCpu);
  if (m === undefined) {
    // An unmapped list (reported above when dma-debug is on) has nothing the sync could move.
    if (!dev.kernel.debug.enabled) return;
    dev.kernel.debug.report("sync-not-mapped", dev.bdf, `device driver tries to sync a DMA sg list it has not mapped [nents=${nents}]`);
    return;
  }
  dev.kernel.trace.counters.add(Counter.DmaSyncCalls);
  // Data moves for the entries that were mapped, whatever count the caller passed (a mismatch was reported).
  const n = m.nents;
  if (m.path === "classic" || m.path === "two-step") {
    if (toCpu) syncEntriesForCpu(dev, table, n, dir, 0);
    else syncEntriesForDevice(dev, table, n, undefined, dir, 0);
    return;
  }
  // Per-segment mappings: each entry is synced like a single mapping (bounce copies, cache maintenance).
  for (let i = 0; i < n; i++) {
    const flags = table.flags[i] ?? 0;
    if ((flags & (SgDmaFlag.BUS_ADDRESS | SgDmaFlag.MMIO)) !== 0) continue;
    const addr = table.dmaAddress[i] ?? 0;
    const len = table.length[i] ?? 0;
    if (toCpu) dmaSyncSingleForCpuUntracked(dev, addr as DmaAddr, len, dir);
    else dmaSyncSingleForDeviceUntracked(dev, addr as DmaAddr, len, dir);
  }
}

/** dma_sync_sg_for_cpu: hand the list back to the CPU after the device wrote it (bounce back, invalidate). */
export function dmaSyncSgForCpu(dev: DmaDevice, table: SgTable, nents: number, dir: DmaDirection): void {
  sync("dma_sync_sg_for_cpu", dev, table, nents, dir, true);
}

/** dma_sync_sg_for_device: hand the list to the device after the CPU wrote it (bounce, clean). */
export function dmaSyncSgForDevice(dev: DmaDevice, table: SgTable, nents: number, dir: DmaDirection): void {
  sync("dma_sync_sg_for_device", dev, table, nents, dir, false);
}

/** dma_sync_sgtable_for_cpu. */
export function dmaSyncSgtableForCpu(dev: DmaDevice, table: SgTable, dir: DmaDirection): void {
  checkSgTable("dma_sync_sgtable_for_cpu", table);
  dmaSyncSgForCpu(dev, table, table.origNents, dir);
}

/** dma_sync_sgtable_for_device. */
export function dmaSyncSgtableForDevice(dev: DmaDevice, table: SgTable, dir: DmaDirection): void {
  checkSgTable("dma_sync_sgtable_for_device", table);
  dmaSyncSgForDevice(dev, table, table.origNents, dir);
}
