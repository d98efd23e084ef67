import { DMA_ATTR_SKIP_CPU_SYNC, archSyncDmaForCpu, archSyncDmaForDevice } from "@dmasim/dma";
import type { DmaDevice, DmaDirection } from "@dmasim/dma";
import { EntryKind } from "./classify.js";
import type { SgTable } from "./sg-table.js";

/**
 * iommu_dma_sync_sg_for_device / _for_cpu on a list mapped through one IOVA: CPU cache maintenance over
 * each entry's own bytes, for non-coherent devices only. P2P entries are device memory behind a BAR and
 * are left alone (upstream would run cache maintenance on MMIO there).
 */
export function syncEntriesForDevice(dev: DmaDevice, table: SgTable, nents: number, kinds: Uint8Array | undefined, dir: DmaDirection, attrs: number): void {
  if (dev.coherent || (attrs & DMA_ATTR_SKIP_CPU_SYNC) !== 0) return;
  for (let i = 0; i < nents; i++) {
    if (kinds !== undefined && kinds[i] !== EntryKind.MEMORY) continue;
    archSyncDmaForDevice(dev, table.phys[i] ?? 0, table.length[i] ?? 0, dir);
  }
}

export function syncEntriesForCpu(dev: DmaDevice, table: SgTable, nents: number, dir: DmaDirection, attrs: number): void {
  if (dev.coherent || (attrs & DMA_ATTR_SKIP_CPU_SYNC) !== 0) return;
  const memory = dev.kernel.memory;
  for (let i = 0; i < nents; i++) {
    const phys = table.phys[i] ?? 0;
    const len = table.length[i] ?? 0;
    // P2P pages live in a BAR, not in RAM: no cache maintenance for them.
    if (!memory.isRam(phys, len)) continue;
    archSyncDmaForCpu(dev, phys, len, dir);
  }
}
