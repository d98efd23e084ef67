import { createDmaKernel, DmaDirection } from "@dmasim/dma";
import type { CostReport, DmaDevice, DmaKernel, IommuMode } from "@dmasim/dma";
import { GiB, MiB, PAGE_SIZE } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import type { CounterName } from "@dmasim/dma";
import { dmaMapSgtable, dmaUnmapSgtable } from "./map.js";
import type { SgMapOptions } from "./map.js";
import { sgAllocTable, sgSetPhys } from "./sg-table.js";
import type { SgTable } from "./sg-table.js";
import type { PhysAddr } from "@dmasim/memory";

// Builds the benchmark lists and the counter table of the README: the same list mapped and unmapped by
// the classic and the two-step dma_map_sg, with counters and modelled time. Used by the benchmark and by
// counter-table.test.ts (which prints the table); not part of the public API.

export type ListShape = "4k" | "4k-contig" | "mixed";

export interface CompareRig {
  readonly kernel: DmaKernel;
  readonly dev: DmaDevice;
  readonly table: SgTable;
}

/**
 * A trusted device behind one IOMMU and a list of `n` entries: "4k" = whole 4 KiB pages, none physically
 * next to the previous one; "mixed" = sizes from 512 bytes to 12 KiB at varying offsets (a network or
 * storage payload list), also scattered; "4k-contig" = whole 4 KiB pages of one physically contiguous
 * buffer, one entry per page (what a driver gets from a page-by-page builder that does not merge).
 */
export function compareRig(n: number, shape: ListShape, options: { mode?: IommuMode; debug?: "off" | "throw" } = {}): CompareRig {
  const platform = createPlatform({ memory: { ramBytes: 4 * GiB }, iommu: {}, endpoints: [{ bdf: "0000:01:00.0" }] });
  const kernel = createDmaKernel(platform, { iommuMode: options.mode ?? "strict", debug: options.debug ?? "off", swiotlb: { bytes: 1 * MiB } });
  const dev = kernel.device("0000:01:00.0", { maxSegmentSize: 65536 });
  const table = sgAllocTable(platform.trace, n);
  const alloc = platform.memory.allocator;
  const contig = shape === "4k-contig" ? alloc.allocPages(n) : 0;
  for (let i = 0; i < n; i++) {
    if (shape === "4k-contig") {
      sgSetPhys(table, i, (contig + i * PAGE_SIZE) as PhysAddr, PAGE_SIZE);
    } else if (shape === "4k") {
      sgSetPhys(table, i, alloc.allocPages(2), PAGE_SIZE);
    } else {
      // Deterministic mix: lengths 512 B … 12 KiB, every third entry at an odd offset.
      const len = [512, 1500, 4096, 9000, 12288, 2048, 4096, 700][i % 8] ?? PAGE_SIZE;
      const offset = i % 3 === 1 ? 64 * (i % 17) : 0;
      const base = alloc.allocPages(Math.ceil((offset + len) / PAGE_SIZE) + 1);
      sgSetPhys(table, i, (base + offset) as PhysAddr, len);
    }
  }
  return { kernel, dev, table };
}

/** One map + unmap of the rig's list. */
export function mapUnmap(rig: CompareRig, options: SgMapOptions): void {
  const { dev, table } = rig;
  if (dmaMapSgtable(dev, table, DmaDirection.TO_DEVICE, 0, options) !== 0) throw new Error("benchmark list failed to map");
  dmaUnmapSgtable(dev, table, DmaDirection.TO_DEVICE);
}

export interface CompareRow {
  readonly entries: number;
  readonly shape: ListShape;
  readonly impl: string;
  readonly segments: number;
  readonly counters: Partial<Record<CounterName, number>>;
  readonly modelledNs: number;
  readonly report: CostReport;
}

/** Counters of one map + unmap (after one warm-up round, so the IOVA caches are in their steady state). */
export function compareOnce(n: number, shape: ListShape, impl: "two-step" | "classic", interior: "widen" | "split" = "widen"): CompareRow {
  const rig = compareRig(n, shape);
  const options: SgMapOptions = { impl, interior };
  mapUnmap(rig, options);
  const before = rig.kernel.trace.counters.snapshot();
  if (dmaMapSgtable(rig.dev, rig.table, DmaDirection.TO_DEVICE, 0, options) !== 0) throw new Error("list failed to map");
  const segments = rig.table.nents;
  dmaUnmapSgtable(rig.dev, rig.table, DmaDirection.TO_DEVICE);
  const report = rig.kernel.costs(before);
  return { entries: n, shape, impl: impl === "classic" ? "classic" : `two-step/${interior}`, segments, counters: report.counters, modelledNs: report.totalNs, report };
}

const COLUMNS: readonly [string, (r: CompareRow) => number][] = [
  ["DMA segs", (r) => r.segments],
  ["IOVA allocs", (r) => (r.counters.IovaAllocCache ?? 0) + (r.counters.IovaAllocTree ?? 0)],
  ["iommu_map calls", (r) => r.counters.IommuMapCalls ?? 0],
  ["PTE writes", (r) => r.counters.PteWrites ?? 0],
  ["IOTLB sync_map", (r) => r.counters.IotlbSyncMap ?? 0],
  ["IOTLB inval", (r) => (r.counters.IotlbInvalRange ?? 0) + (r.counters.IotlbInvalDomain ?? 0) + (r.counters.IotlbInvalGlobal ?? 0)],
  ["links", (r) => r.counters.DmaIovaLinks ?? 0],
  ["bookkeeping B", (r) => r.counters.DmaBookkeepingBytesAllocated ?? 0],
  ["modelled µs", (r) => Math.round(r.modelledNs / 10) / 100],
];

/** The README's counter table as Markdown: 16, 256 and 4096 entries, 4 KiB pages and mixed sizes. */
export function counterTable(sizes: readonly number[] = [16, 256, 4096]): string {
  const lines = [`| list | impl | ${COLUMNS.map(([h]) => h).join(" | ")} |`, `|---|---|${COLUMNS.map(() => "---:").join("|")}|`];
  for (const shape of ["4k", "4k-contig", "mixed"] as const) {
    for (const n of sizes) {
      const rows = [compareOnce(n, shape, "classic"), compareOnce(n, shape, "two-step", "widen"), compareOnce(n, shape, "two-step", "split")];
      for (const r of rows) lines.push(`| ${n} × ${shape === "4k" ? "4 KiB" : shape === "4k-contig" ? "4 KiB contiguous" : "mixed"} | ${r.impl} | ${COLUMNS.map(([, f]) => String(f(r))).join(" | ")} |`);
    }
  }
  return lines.join("\n");
}

