import type { CostOverrides, IommuMode } from "@dmasim/dma";
import type { BufferLayout, MappingStyle } from "@dmasim/nvme";
import { createNvmeSystem, prefillNamespace, runWorkload } from "@dmasim/nvme";

/** One I/O profile of the comparison. */
export interface CompareProfile {
  readonly name: string;
  readonly bs: number;
  readonly layout: BufferLayout;
  readonly readPct: number;
}

export const DEFAULT_PROFILES: readonly CompareProfile[] = [
  { name: "4 KiB random read", bs: 4096, layout: "contiguous", readPct: 100 },
  { name: "64 KiB, 16 scattered pages, 70% read", bs: 65536, layout: "scattered", readPct: 70 },
];

export const DRIVERS: readonly { readonly style: MappingStyle; readonly label: string }[] = [
  { style: "sg-classic", label: "scatterlist + dma_map_sg (upstream iommu_dma_map_sg)" },
  { style: "sg-two-step", label: "scatterlist + dma_map_sg (on dma_iova_*)" },
  { style: "iterator", label: "blk_rq_dma_map iterator (no sg table)" },
];

/** Per-request figures of one driver × mode × profile run. */
export interface CompareRow {
  readonly profile: string;
  readonly driver: string;
  readonly style: MappingStyle;
  readonly mode: IommuMode;
  readonly ops: number;
  readonly iovaAllocs: number;
  /** iommu_map calls (one per physically contiguous run, whichever API issues them). */
  readonly iommuMapCalls: number;
  /** DMA API calls: dma_map_* / dma_unmap_* and the dma_iova_* family. */
  readonly apiCalls: number;
  readonly pteWrites: number;
  readonly iotlbSyncMaps: number;
  readonly iotlbInvalidations: number;
  readonly bookkeepingBytes: number;
  /** Modelled CPU time of the DMA mapping work per request (cost profile), ns. */
  readonly modelledNs: number;
  /** Of which rests on assumed figures, ns. */
  readonly assumedNs: number;
  /** 1e9 / modelledNs: requests per second one CPU could map and unmap. */
  readonly modelledIops: number;
  /** Wall time per request of the whole simulation (mapping, device, verification), µs. */
  readonly wallUs: number;
}

export interface CompareOptions {
  readonly ops?: number;
  readonly queueDepth?: number;
  readonly seed?: number;
  readonly profiles?: readonly CompareProfile[];
  readonly modes?: readonly IommuMode[];
  /** Cost overrides (ns per event), e.g. { IotlbSyncMap: 0 } for bare metal. */
  readonly costProfile?: CostOverrides;
}

/**
 * Runs every profile with each driver style in strict and lazy mode (debug off, every byte verified),
 * after a warm-up that fills the IOVA caches and descriptor pools, and reports per-request figures.
 * `now` times the runs (performance.now in the CLI).
 */
export function compareDrivers(now: () => number, options: CompareOptions = {}): CompareRow[] {
  const ops = options.ops ?? 20_000;
  const qd = options.queueDepth ?? 32;
  const rows: CompareRow[] = [];
  for (const profile of options.profiles ?? DEFAULT_PROFILES) {
    for (const mode of options.modes ?? (["strict", "lazy"] as const)) {
      for (const d of DRIVERS) {
        const sys = createNvmeSystem({
          iommuMode: mode,
          debug: "off",
          mapping: d.style,
          queueDepth: qd,
          namespaceBytes: 64 * 1024 * 1024,
          ...(options.costProfile === undefined ? {} : { costProfile: options.costProfile }),
        });
        const gen = prefillNamespace(sys);
        const job = { bsMin: profile.bs, bsMax: profile.bs, layout: profile.layout, readPct: profile.readPct, queueDepth: qd };
        runWorkload(sys, { ...job, ops: Math.min(1000, ops), seed: 99 }, gen);
        const t0 = now();
        const r = runWorkload(sys, { ...job, ops, seed: options.seed ?? 1 }, gen);
        const wall = now() - t0;
        const c = r.costs.counters;
        const per = (n: number | undefined): number => (n ?? 0) / r.ops;
        const ns = r.costs.totalNs / r.ops;
        rows.push({
          profile: profile.name,
          driver: d.label,
          style: d.style,
          mode,
          ops: r.ops,
          iovaAllocs: per((c.IovaAllocCache ?? 0) + (c.IovaAllocTree ?? 0)),
          iommuMapCalls: per(c.IommuMapCalls),
          apiCalls: per(
            (c.DmaMapCalls ?? 0) + (c.DmaUnmapCalls ?? 0) + (c.DmaIovaTryAllocs ?? 0) + (c.DmaIovaLinks ?? 0) + (c.DmaIovaSyncs ?? 0) + (c.DmaIovaUnlinks ?? 0) + (c.DmaIovaDestroys ?? 0),
          ),
          pteWrites: per(c.PteWrites),
          iotlbSyncMaps: per(c.IotlbSyncMap),
          iotlbInvalidations: per((c.IotlbInvalRange ?? 0) + (c.IotlbInvalDomain ?? 0) + (c.IotlbInvalGlobal ?? 0) + (c.IotlbInvalDevice ?? 0)),
          bookkeepingBytes: per(c.DmaBookkeepingBytesAllocated),
          modelledNs: ns,
          assumedNs: r.costs.assumedNs / r.ops,
          modelledIops: ns > 0 ? 1e9 / ns : Infinity,
          wallUs: (wall * 1000) / r.ops,
        });
      }
    }
  }
  return rows;
}

function fmt(n: number, digits = 2): string {
  if (!Number.isFinite(n)) return "∞";
  if (n >= 1000) return Math.round(n).toLocaleString("en-US");
  const text = n.toFixed(digits);
  // Trailing zeros of the fraction only: "0.500" → "0.5", "720" stays "720".
  return text.includes(".") ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
}

/** The comparison as a Markdown table. */
export function formatComparison(rows: readonly CompareRow[]): string {
  const head = ["profile", "mode", "driver", "DMA API calls", "IOVA allocs", "iommu_map calls", "PTE writes", "IOTLB sync_map", "IOTLB invals", "bookkeeping B", "modelled ns (assumed)", "modelled IOPS/CPU", "wall µs"];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  for (const r of rows) {
    lines.push(
      `| ${[
        r.profile,
        r.mode,
        r.driver,
        fmt(r.apiCalls),
        fmt(r.iovaAllocs),
        fmt(r.iommuMapCalls),
        fmt(r.pteWrites),
        fmt(r.iotlbSyncMaps),
        fmt(r.iotlbInvalidations, 3),
        fmt(r.bookkeepingBytes),
        `${fmt(r.modelledNs, 0)} (${fmt(r.assumedNs, 0)})`,
        fmt(r.modelledIops, 0),
        fmt(r.wallUs, 1),
      ].join(" | ")} |`,
    );
  }
  return lines.join("\n");
}
