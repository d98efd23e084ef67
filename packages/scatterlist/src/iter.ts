import type { DmaAddr } from "@dmasim/dma";
import type { PhysAddr } from "@dmasim/memory";
import type { SgTable } from "./sg-table.js";

// for_each_sg and friends (include/linux/scatterlist.h). The callback gets the index and the entry's
// fields as numbers (the address branded as a type only), so walking a table allocates nothing; return
// `false` to stop early (a `break`).

/**
 * Called per entry with its address (a `PhysAddr` for the CPU entries, a `DmaAddr` for the DMA segments)
 * and length; returning exactly `false` stops the walk.
 */
export type SgVisitor<A extends PhysAddr | DmaAddr = PhysAddr | DmaAddr> = (i: number, addr: A, len: number) => boolean | undefined;

/** for_each_sg(sgl, sg, nents, i): the first `nents` CPU entries (physical address, length). */
export function forEachSg(table: SgTable, nents: number, fn: SgVisitor<PhysAddr>): void {
  const n = Math.min(nents, table.origNents);
  const phys = table.phys;
  const length = table.length;
  for (let i = 0; i < n; i++) if (fn(i, (phys[i] ?? 0) as PhysAddr, length[i] ?? 0) === false) return;
}

/** for_each_sgtable_sg: every CPU entry (orig_nents). */
export function forEachSgtableSg(table: SgTable, fn: SgVisitor<PhysAddr>): void {
  forEachSg(table, table.origNents, fn);
}

/** for_each_sgtable_dma_sg: every DMA segment of a mapped table (nents): DMA address and DMA length. */
export function forEachSgtableDmaSg(table: SgTable, fn: SgVisitor<DmaAddr>): void {
  const addr = table.dmaAddress;
  const len = table.dmaLength;
  for (let i = 0; i < table.nents; i++) if (fn(i, (addr[i] ?? 0) as DmaAddr, len[i] ?? 0) === false) return;
}

/** The DMA segments as [address, length] pairs: a convenience for tests and reports, not a hot path. */
export function sgtableDmaSegments(table: SgTable): [DmaAddr, number][] {
  const out: [DmaAddr, number][] = [];
  forEachSgtableDmaSg(table, (_i, a, l) => {
    out.push([a, l]);
    return true;
  });
  return out;
}
