import type { CounterSnapshot } from "@dmasim/trace";
import { Counter, counterNames } from "./counters.js";
import type { CounterName } from "./counters.js";
import { COST_PROFILE_NAMES, costProfiles, isCostProfileName } from "./cost-profiles.js";
import type { CostProfile, CostProfileName, CostRow, SharedResource } from "./cost-profiles.js";
import { DmaOptionsError } from "./errors.js";
import { parseCostOverrides } from "./options.js";

export type { CostProfile, CostRow } from "./cost-profiles.js";

/**
 * A cost profile turns counted events into modelled nanoseconds: one row per counter that costs time.
 * Every figure names where it comes from; rows that no publication gives are `assumed` and are named
 * parameters a user overrides (`createDmaKernel(p, { costProfile: "vtd", costOverrides: { IotlbInvalRange: 900 } })`).
 * The named profiles and their rows are in cost-profiles.ts.
 */
export type CostOverrides = Readonly<Partial<Record<CounterName, number>>>;

/** The default profile: `costProfiles.default`, which is DEFAULT_COST_PROFILE's rows. */
export const defaultCostProfile: CostProfile = costProfiles.default;

/**
 * A named profile (default: "default") with some per-event figures replaced; replaced rows say so. A
 * replaced row keeps its shared resource, scaled: the same fraction of the new figure is queued for.
 * `costProfile({ … })` is `costProfile("default", { … })`.
 */
export function costProfile(nameOrOverrides: CostProfileName | CostOverrides = "default", overrides: CostOverrides = {}): CostProfile {
  const name = typeof nameOrOverrides === "string" ? nameOrOverrides : "default";
  if (!isCostProfileName(name)) throw new DmaOptionsError("costProfile", "costProfile", [{ path: "", value: name, expected: `a profile name: ${COST_PROFILE_NAMES.join(", ")}` }]);
  const base = costProfiles[name];
  const replace = typeof nameOrOverrides === "string" ? overrides : nameOrOverrides;
  const out: Record<string, CostRow> = { ...base };
  for (const [counter, ns] of Object.entries(parseCostOverrides(replace)) as [CounterName, number | undefined][]) {
    if (ns === undefined) continue;
    const was = base[counter];
    const row: CostRow = { counter, ns, source: "user override", assumed: false };
    const shared = was?.shared;
    out[counter] = was === undefined || shared === undefined ? row : { ...row, shared: { resource: shared.resource, ns: was.ns === 0 ? ns : (ns * shared.ns) / was.ns } };
  }
  return out;
}

/** One line of a cost report: a counter that moved, how often, and the time it stands for. */
export interface CostLine {
  /** The counter priced. */
  readonly counter: CounterName;
  /** Events counted (bytes for a byte counter). */
  readonly count: number;
  /** The profile's nanoseconds per event. */
  readonly nsEach: number;
  /** `count × nsEach`: modelled nanoseconds. */
  readonly ns: number;
  /** True when the figure is assumed rather than published (see `CostRow.assumed`). */
  readonly assumed: boolean;
  /** Where the figure comes from (the row's `source`). */
  readonly source: string;
}

/** Counters and modelled time, always together. */
export interface CostReport {
  /** Every non-zero counter, costed or not. */
  readonly counters: Readonly<Partial<Record<CounterName, number>>>;
  /** One line per costed counter that moved. */
  readonly lines: readonly CostLine[];
  /** Modelled nanoseconds of every line together, uncontended. */
  readonly totalNs: number;
  /** Part of totalNs that rests on assumed figures. */
  readonly assumedNs: number;
  /** Part of totalNs spent holding a resource every CPU shares, by resource (contention.ts queues it). */
  readonly sharedNs: Readonly<Record<SharedResource, number>>;
}

/** Prices a counter snapshot (or a diff of two) with a profile. */
export function priceCounters(snapshot: CounterSnapshot, profile: CostProfile = defaultCostProfile): CostReport {
  const counts: Partial<Record<CounterName, number>> = {};
  for (const name of counterNames) {
    const n = snapshot.get(Counter[name]);
    if (n !== 0) counts[name] = n;
  }
  return { ...priceCounts(counts, profile), counters: snapshot.nonZero() };
}

/**
 * Prices counts by counter name (a run's `counters`, as a scenario result or a report holds them) with a
 * profile: the same counts under another profile, without running anything again.
 */
export function priceCounts(counts: Readonly<Partial<Record<CounterName, number>>>, profile: CostProfile = defaultCostProfile): CostReport {
  const lines: CostLine[] = [];
  let totalNs = 0;
  let assumedNs = 0;
  const sharedNs: Record<SharedResource, number> = { "iova-tree-lock": 0, "inval-queue": 0 };
  const counters: Partial<Record<CounterName, number>> = {};
  for (const name of counterNames) {
    const count = counts[name] ?? 0;
    if (count === 0) continue;
    counters[name] = count;
    const row = profile[name];
    if (row === undefined) continue;
    const ns = count * row.ns;
    lines.push({ counter: name, count, nsEach: row.ns, ns, assumed: row.assumed, source: row.source });
    totalNs += ns;
    if (row.assumed) assumedNs += ns;
    if (row.shared !== undefined) sharedNs[row.shared.resource] += count * row.shared.ns;
  }
  return { counters, lines, totalNs, assumedNs, sharedNs };
}
