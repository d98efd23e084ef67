import type { IommuMode } from "@dmasim/dma";
import type { CounterName } from "@dmasim/dma";
import type { Api, WorkloadKind } from "../types.js";

/** One thing a run verified: the device saw the right bytes, nothing faulted, nothing leaked… */
export interface Check {
  /** What was checked, in a few words. */
  readonly name: string;
  /** Whether it held. */
  readonly ok: boolean;
  /** What was seen, for the report. */
  readonly detail: string;
}

/** What every workload runner returns, whatever its kind. */
export interface RunResult {
  /** Name of the scenario that ran. */
  readonly scenario: string;
  /** Its workload kind. */
  readonly kind: WorkloadKind;
  /** The mapping API the run used (classic or two-step). */
  readonly api: Api;
  /** The IOMMU mode the run used. */
  readonly iommu: IommuMode;
  /** Every check held. */
  readonly ok: boolean;
  /** Every check of the run, passed or not. */
  readonly checks: readonly Check[];
  /** What was mapped and how, in a few lines. */
  readonly mapped: readonly string[];
  /** Counters that moved during the workload (set-up excluded). */
  readonly counters: Readonly<Partial<Record<CounterName, number>>>;
  /** DMA API calls by kernel name (dma_map_phys, dma_iova_link, …), from the counters. */
  readonly apiCalls: Readonly<Record<string, number>>;
  /** The counters priced by the cost profile, and the part of it that rests on assumed figures. */
  readonly modelledNs: number;
  /** The part of modelledNs that rests on assumed (not measured) cost figures. */
  readonly assumedNs: number;
  /** Numbers particular to the workload kind (bytes verified, stale reads, map type…). */
  readonly metrics: Readonly<Record<string, number>>;
}

const API_COUNTERS: readonly (readonly [CounterName, string])[] = [
  ["DmaMapCalls", "dma_map_*"],
  ["DmaUnmapCalls", "dma_unmap_*"],
  ["DmaSyncCalls", "dma_sync_*"],
  ["DmaIovaTryAllocs", "dma_iova_try_alloc"],
  ["DmaIovaLinks", "dma_iova_link"],
  ["DmaIovaSyncs", "dma_iova_sync"],
  ["DmaIovaUnlinks", "dma_iova_unlink"],
  ["DmaIovaDestroys", "dma_iova_destroy"],
];

/** DMA API calls by kernel name from a counter snapshot (only the calls that happened). */
export function apiCallsOf(counters: Readonly<Partial<Record<CounterName, number>>>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [c, name] of API_COUNTERS) {
    const v = counters[c] ?? 0;
    if (v !== 0) out[name] = v;
  }
  return out;
}

/** All DMA API calls of a run, summed. */
export function totalApiCalls(r: RunResult): number {
  let n = 0;
  for (const v of Object.values(r.apiCalls)) n += v;
  return n;
}

export function check(name: string, ok: boolean, detail: string): Check {
  return { name, ok, detail };
}
