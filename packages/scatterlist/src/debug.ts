import { PAGE_SIZE, type PhysAddr } from "@dmasim/memory";
import { hex64 } from "@dmasim/trace";
import type { DmaAddr, DmaDevice, DmaDirection } from "@dmasim/dma";
import type { SgTable } from "./sg-table.js";

// dma-debug for scatterlists (kernel/dma/debug.c: debug_dma_map_sg, check_sg_segment,
// debug_dma_unmap_sg, debug_dma_sync_sg_for_*), on the DMA package's checker.

/**
 * Checks made before anything is mapped, so that a refusal in "throw" mode leaves nothing behind:
 * check_for_stack / check_for_illegal_area / overlapping cachelines per CPU entry, and the first half of
 * check_sg_segment (an entry longer than the device's max segment size).
 */
export function debugCheckMapSg(dev: DmaDevice, table: SgTable, nents: number, dir: DmaDirection, attrs: number): void {
  const debug = dev.kernel.debug;
  if (!debug.enabled) return;
  const pages = dev.kernel.memory.pages;
  const pageFlags = (phys: number): number => {
    const pfn = Math.floor(phys / PAGE_SIZE);
    return pages.hasPage(pfn) ? pages.flags(pfn) : -1;
  };
  const maxSeg = dev.maxSegmentSize;
  for (let i = 0; i < nents; i++) {
    const phys = table.phys[i] ?? 0;
    const len = table.length[i] ?? 0;
    debug.checkMap(dev.bdf, phys as PhysAddr, len, dir, attrs, pageFlags);
    if (len > maxSeg) debug.report("sg-segment-too-long", dev.bdf, `mapping sg segment longer than device claims to support [len=${len}] [max=${maxSeg}]`);
  }
}

/**
 * The second half of check_sg_segment: a DMA segment that crosses the device's segment boundary. Returns
 * the findings (check, message) without reporting them, so the caller can undo the mapping first in
 * "throw" mode.
 */
export function debugFindBoundaryCrossings(dev: DmaDevice, table: SgTable, count: number): string[] {
  const out: string[] = [];
  if (!dev.kernel.debug.enabled) return out;
  const mask = dev.segBoundaryMask;
  const window = mask + 1;
  for (let k = 0; k < count; k++) {
    const start = table.dmaAddress[k] ?? 0;
    const end = start + (table.dmaLength[k] ?? 0) - 1;
    if (Math.floor(start / window) !== Math.floor(end / window)) {
      out.push(`mapping sg segment across boundary [start=${hex64(start)}] [end=${hex64(end)}] [boundary=${hex64(mask)}]`);
    }
  }
  return out;
}

/**
 * debug_dma_map_sg: one scatter-gather entry per DMA segment, paired (as upstream does) with the CPU
 * entry of the same index for its physical address. A merged segment spans several CPU entries that need
 * not be contiguous in memory, so the cachelines are tracked per CPU entry instead: the first segment
 * holds the lines of all `nents` entries (upstream inserts the first line of each segment's paired entry),
 * the others hold none. The entries of one list are not checked against each other.
 */
export function debugAddSg(dev: DmaDevice, table: SgTable, nents: number, count: number, dir: DmaDirection, attrs: number): void {
  const debug = dev.kernel.debug;
  if (!debug.enabled) return;
  const lines: number[] = [];
  for (let i = 0; i < nents; i++) lines.push(table.phys[i] ?? 0, table.length[i] ?? 0);
  for (let k = 0; k < count; k++) {
    debug.add(
      { type: "scatter-gather", device: dev.bdf, dmaAddr: (table.dmaAddress[k] ?? 0) as DmaAddr, size: table.dmaLength[k] ?? 0, phys: (table.phys[k] ?? 0) as PhysAddr, dir, sgCount: nents, sgMappedEnts: count },
      attrs,
      true,
      undefined,
      k === 0 ? lines : NO_LINES,
    );
  }
}

const NO_LINES: readonly number[] = [];

/**
 * debug_dma_unmap_sg. The count is compared first (before any entry is forgotten), so in "throw" mode a
 * refused unmap leaves the mapping and the checker as they were; "collect" records it and carries on.
 */
export function debugUnmapSg(dev: DmaDevice, table: SgTable, nents: number, mappedNents: number, mappedEnts: number, dir: DmaDirection): void {
  const debug = dev.kernel.debug;
  if (!debug.enabled) return;
  if (nents !== mappedNents) {
    debug.report("unmap-sg-count-mismatch", dev.bdf, `device driver frees DMA sg list with different entry count [map count=${mappedNents}] [unmap count=${nents}]`);
  }
  for (let k = 0; k < mappedEnts; k++) {
    debug.unmap(dev.bdf, { type: "scatter-gather", dmaAddr: (table.dmaAddress[k] ?? 0) as DmaAddr, size: table.dmaLength[k] ?? 0, dir, sgCount: mappedNents });
  }
}

/** debug_dma_sync_sg_for_cpu / _for_device: check_sync per DMA segment, with the sg count compared. */
export function debugSyncSg(dev: DmaDevice, table: SgTable, nents: number, mappedEnts: number, dir: DmaDirection, toCpu: boolean): void {
  const debug = dev.kernel.debug;
  if (!debug.enabled) return;
  for (let k = 0; k < mappedEnts; k++) {
    debug.sync(dev.bdf, (table.dmaAddress[k] ?? 0) as DmaAddr, table.dmaLength[k] ?? 0, dir, toCpu, nents);
  }
}
