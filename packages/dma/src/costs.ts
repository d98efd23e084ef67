import type { CounterSnapshot } from "@dmasim/trace";
import { Counter, counterNames } from "./counters.js";
import type { CounterName } from "./counters.js";
import { parseCostOverrides } from "./options.js";

/**
 * A cost profile turns counted events into modelled nanoseconds: one row per counter that costs time.
 * Every figure names where it comes from; rows that no publication gives are `assumed` and are named
 * parameters a user overrides (`createDmaKernel(p, { costProfile: { IotlbInvalRange: 900 } })`).
 */
export interface CostRow {
  readonly counter: CounterName;
  /** Nanoseconds per counted event (per byte for byte counters). */
  readonly ns: number;
  readonly source: string;
  readonly assumed: boolean;
}

export type CostProfile = Readonly<Record<string, CostRow>>;
export type CostOverrides = Readonly<Partial<Record<CounterName, number>>>;

const GUNTHORPE = "iommu_map/unmap kunit figures, i7-12700 (J. Gunthorpe, 'iommu: Consolidate iommu page table implementations' v7, 2025)";
const SALEH = "dma_map_single/unmap on Arm Morello SMMUv3, 1 thread (M. Saleh, IOMMU debug_pagealloc series, 2026)";

const rows: CostRow[] = [
  // iommu_map: 53-57 ns for one 4 KiB page, 380-405 ns for 256 pages in one call → ~51.7 ns per call
  // plus ~1.33 ns per PTE reproduces both rows (53 ns and 392 ns).
  { counter: "IommuMapCalls", ns: 51.7, source: `${GUNTHORPE}: fixed part fitted to 1 page = 53 ns, 256 pages = 392 ns`, assumed: false },
  { counter: "PteWrites", ns: 1.33, source: `${GUNTHORPE}: per-page part of the same fit`, assumed: false },
  // iommu_unmap: 69-72 ns for one page, 210 ns for 256 pages (VT-d) → 69.5 ns + 0.55 ns per PTE.
  { counter: "IommuUnmapCalls", ns: 69.5, source: `${GUNTHORPE}: fixed part fitted to 1 page = 70 ns, 256 pages = 210 ns (VT-d)`, assumed: false },
  { counter: "PteClears", ns: 0.55, source: `${GUNTHORPE}: per-page part of the same fit`, assumed: false },
  // dma_map_single 4 KiB = 0.1 µs in total on Morello: iommu_map ≈ 53 ns leaves ≈ 47 ns for the IOVA
  // cache and the API itself.
  { counter: "IovaAllocCache", ns: 30, source: `derived: ${SALEH} 4 KiB map 0.1 µs minus iommu_map 53 ns, split 30 ns IOVA cache / 17 ns API`, assumed: false },
  { counter: "DmaMapCalls", ns: 17, source: "derived: remainder of the same 0.1 µs dma_map_single figure", assumed: false },
  { counter: "IovaFreeCache", ns: 30, source: "assumed equal to a cache allocation (magazine push vs pop)", assumed: true },
  { counter: "IovaAllocTree", ns: 250, source: "assumed: rbtree walk and insert under the domain lock, no published figure", assumed: true },
  { counter: "IovaFreeTree", ns: 150, source: "assumed: rbtree erase under the domain lock, no published figure", assumed: true },
  // dma_unmap_single 4 KiB = 0.6 µs on Morello: unmap ≈ 70 ns and an IOVA free ≈ 30 ns leave ≈ 500 ns
  // for the one synchronous IOTLB invalidation.
  { counter: "IotlbInvalRange", ns: 500, source: `derived: ${SALEH} 4 KiB unmap 0.6 µs minus iommu_unmap 70 ns and IOVA free 30 ns`, assumed: false },
  { counter: "IotlbInvalDomain", ns: 1000, source: "assumed: a whole-domain invalidation with its completion wait; no published figure", assumed: true },
  { counter: "IotlbInvalGlobal", ns: 1000, source: "assumed: as a domain invalidation", assumed: true },
  { counter: "IotlbSyncMap", ns: 500, source: "assumed: iotlb_sync_map where the IOMMU needs it (VT-d caching mode, virtual IOMMUs) costs a queued invalidation; bare metal often skips it (set 0)", assumed: true },
  { counter: "DmaUnmapCalls", ns: 17, source: "assumed equal to the map call overhead", assumed: true },
  // The two-step calls are API calls too: their page-table, IOVA and IOTLB work is priced by the rows
  // above; these rows are the per-call overhead, taken equal to dma_map_phys's derived 17 ns.
  { counter: "DmaIovaTryAllocs", ns: 17, source: "assumed equal to the dma_map_phys call overhead (derived row DmaMapCalls)", assumed: true },
  { counter: "DmaIovaLinks", ns: 17, source: "assumed equal to the dma_map_phys call overhead (derived row DmaMapCalls)", assumed: true },
  { counter: "DmaIovaSyncs", ns: 17, source: "assumed equal to the dma_map_phys call overhead (derived row DmaMapCalls)", assumed: true },
  { counter: "DmaIovaUnlinks", ns: 17, source: "assumed equal to the dma_map_phys call overhead (derived row DmaMapCalls)", assumed: true },
  { counter: "DmaIovaDestroys", ns: 17, source: "assumed equal to the dma_map_phys call overhead (derived row DmaMapCalls)", assumed: true },
  { counter: "SwiotlbBounceBytes", ns: 0.1, source: "assumed: memcpy at 10 GB/s; no published swiotlb bandwidth", assumed: true },
  { counter: "SwiotlbSlotsAllocated", ns: 5, source: "assumed: per-slot bookkeeping in swiotlb_find_slots; no published figure", assumed: true },
  { counter: "CacheLinesWrittenBack", ns: 1, source: "assumed: one 'dc cvac' per line, amortised", assumed: true },
  { counter: "CacheLinesInvalidated", ns: 1, source: "assumed: one 'dc ivac' per line, amortised", assumed: true },
  { counter: "PageDescLookups", ns: 2, source: "assumed: a struct page lookup that hits the cache", assumed: true },
  { counter: "PtPagesAllocated", ns: 100, source: "assumed: a zeroed page from the page allocator", assumed: true },
];

/** The default profile (COSTS.md of the project, figures with their sources). */
export const defaultCostProfile: CostProfile = Object.fromEntries(rows.map((r) => [r.counter, r]));

/** The default profile with some per-event figures replaced; replaced rows say so. */
export function costProfile(overrides: CostOverrides = {}): CostProfile {
  const out: Record<string, CostRow> = { ...defaultCostProfile };
  for (const [name, ns] of Object.entries(parseCostOverrides(overrides)) as [CounterName, number | undefined][]) {
    if (ns === undefined) continue;
    out[name] = { counter: name, ns, source: "user override", assumed: false };
  }
  return out;
}

export interface CostLine {
  readonly counter: CounterName;
  readonly count: number;
  readonly nsEach: number;
  readonly ns: number;
  readonly assumed: boolean;
  readonly source: string;
}

/** Counters and modelled time, always together. */
export interface CostReport {
  /** Every non-zero counter, costed or not. */
  readonly counters: Readonly<Partial<Record<CounterName, number>>>;
  /** One line per costed counter that moved. */
  readonly lines: readonly CostLine[];
  readonly totalNs: number;
  /** Part of totalNs that rests on assumed figures. */
  readonly assumedNs: number;
}

/** Prices a counter snapshot (or a diff of two) with a profile. */
export function priceCounters(snapshot: CounterSnapshot, profile: CostProfile = defaultCostProfile): CostReport {
  const lines: CostLine[] = [];
  let totalNs = 0;
  let assumedNs = 0;
  for (const name of counterNames) {
    const row = profile[name];
    const count = snapshot.get(Counter[name]);
    if (row === undefined || count === 0) continue;
    const ns = count * row.ns;
    lines.push({ counter: name, count, nsEach: row.ns, ns, assumed: row.assumed, source: row.source });
    totalNs += ns;
    if (row.assumed) assumedNs += ns;
  }
  return { counters: snapshot.nonZero(), lines, totalNs, assumedNs };
}
