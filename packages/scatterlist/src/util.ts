import { DMA_ATTR_SKIP_CPU_SYNC } from "@dmasim/dma";
import { archSyncDmaForCpu, archSyncDmaForDevice } from "@dmasim/dma/internal";
import type { DmaDevice, DmaDirection } from "@dmasim/dma";
import { EntryKind } from "./classify.js";
import type { SgTable } from "./sg-table.js";
import { unsafePhysAddr } from "@dmasim/memory";

/**
 * x mod m for an integer 0 <= x < 2^53 and a power of two m (a segment-boundary window, which may be
 * anything from a page to 2^64).
 * ToUint32 (`x >>> 0`) reduces modulo 2^32 without losing low bits, so a mask finishes the job whenever m
 * divides 2^32; a floating-point division, which cost more than the rest of a per-entry loop, is left for
 * windows above 4 GiB, where x is almost always below m anyway.
 */
export function modPow2(x: number, m: number): number {
  if (x < m) return x;
  if (m <= 0x80000000) return (x >>> 0) & (m - 1);
  if (m === 0x100000000) return x >>> 0;
  return x - Math.floor(x / m) * m;
}

/**
 * iommu_dma_sync_sg_for_device / _for_cpu on a list mapped through one IOVA: CPU cache maintenance over
 * each entry's own bytes, for non-coherent devices only. P2P entries are device memory behind a BAR and
 * are left alone (upstream would run cache maintenance on MMIO there).
 */
export function syncEntriesForDevice(dev: DmaDevice, table: SgTable, nents: number, kinds: Uint8Array | undefined, dir: DmaDirection, attrs: number): void {
  if (dev.coherent || (attrs & DMA_ATTR_SKIP_CPU_SYNC) !== 0) return;
  for (let i = 0; i < nents; i++) {
    if (kinds !== undefined && kinds[i] !== EntryKind.MEMORY) continue;
    archSyncDmaForDevice(dev, unsafePhysAddr(table.phys[i] ?? 0), table.length[i] ?? 0, dir);
  }
}

export function syncEntriesForCpu(dev: DmaDevice, table: SgTable, nents: number, dir: DmaDirection, attrs: number): void {
  if (dev.coherent || (attrs & DMA_ATTR_SKIP_CPU_SYNC) !== 0) return;
  const memory = dev.kernel.memory;
  for (let i = 0; i < nents; i++) {
    const phys = table.phys[i] ?? 0;
    const len = table.length[i] ?? 0;
    // P2P pages live in a BAR, not in RAM: no cache maintenance for them.
    if (!memory.isRam(unsafePhysAddr(phys), len)) continue;
    archSyncDmaForCpu(dev, unsafePhysAddr(phys), len, dir);
  }
}
