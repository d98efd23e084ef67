import type { SgTable } from "./sg-table.js";

// for_each_sg and friends (include/linux/scatterlist.h). The callback gets the index and the entry's
// fields as numbers, so walking a table allocates nothing; return `false` to stop early (a `break`).

/** Called per entry; returning exactly `false` stops the walk. */
export type SgVisitor = (i: number, addr: number, len: number) => boolean | undefined;

/** for_each_sg(sgl, sg, nents, i): the first `nents` CPU entries (physical address, length). */
export function forEachSg(table: SgTable, nents: number, fn: SgVisitor): void {
  const n = Math.min(nents, table.origNents);
  const phys = table.phys;
  const length = table.length;
  for (let i = 0; i < n; i++) if (fn(i, phys[i] ?? 0, length[i] ?? 0) === false) return;
}

/** for_each_sgtable_sg: every CPU entry (orig_nents). */
export function forEachSgtableSg(table: SgTable, fn: SgVisitor): void {
  forEachSg(table, table.origNents, fn);
}

/** for_each_sgtable_dma_sg: every DMA segment of a mapped table (nents): DMA address and DMA length. */
export function forEachSgtableDmaSg(table: SgTable, fn: SgVisitor): void {
  const addr = table.dmaAddress;
  const len = table.dmaLength;
  for (let i = 0; i < table.nents; i++) if (fn(i, addr[i] ?? 0, len[i] ?? 0) === false) return;
}

/** The DMA segments as [address, length] pairs: a convenience for tests and reports, not a hot path. */
export function sgtableDmaSegments(table: SgTable): [number, number][] {
  const out: [number, number][] = [];
  forEachSgtableDmaSg(table, (_i, a, l) => {
    out.push([a, l]);
    return true;
  });
  return out;
}
