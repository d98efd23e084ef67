import { patternBytes } from "@dmasim/memory";
import type { CounterSnapshot } from "@dmasim/trace";
import type { Scenario } from "../types.js";
import type { Host, RunContext } from "./context.js";
import { apiCallsOf, check } from "./result.js";
import type { Check, RunResult } from "./result.js";

export interface Outcome {
  readonly checks: Check[];
  readonly mapped: string[];
  readonly metrics: Record<string, number>;
}

/**
 * The checks every run makes once its workload is done, then the result: no IOMMU fault the workload
 * did not provoke on purpose, no dma-debug report, nothing left mapped when the driver unbinds, and the
 * scenario's own expectations (bouncing, P2P map type).
 */
export function finish(s: Scenario, ctx: RunContext, host: Host, bdfs: readonly string[], before: CounterSnapshot, out: Outcome): RunResult {
  const { platform, kernel } = host;
  const costs = kernel.costs(before);
  const checks = [...out.checks];
  const faults = platform.iommus.reduce((n, u) => n + u.faults().length, 0);
  checks.push(check("no IOMMU fault", faults === 0, faults === 0 ? "the device never hit an unmapped or read-only IOVA" : `${faults} IOMMU fault(s)`));
  const reports = kernel.debugReports();
  if (kernel.debug.mode !== "off") {
    checks.push(check("dma-debug clean", reports.length === 0, reports.length === 0 ? "no misuse reported" : reports.map((r) => `${r.check}: ${r.message}`).slice(0, 3).join("; ")));
  }
  let leaked = 0;
  let leakedStates = 0;
  for (const bdf of bdfs) {
    const dev = kernel.device(bdf);
    const report = kernel.unbind(dev);
    leaked += report.leakedMappings.filter((m) => m.type !== "coherent").length;
    leakedStates += report.leakedIovaStates;
  }
  checks.push(
    check("nothing left mapped", leaked === 0 && leakedStates === 0, leaked + leakedStates === 0 ? "every mapping and IOVA was released" : `${leaked} streaming mapping(s) and ${leakedStates} IOVA state(s) still held at unbind`),
  );
  const bounced = costs.counters.SwiotlbBounceBytes ?? 0;
  if (s.expect?.bounce !== undefined) {
    const want = s.expect.bounce;
    checks.push(check(want ? "DMA bounced" : "no bouncing", want ? bounced > 0 : bounced === 0, `${bounced.toLocaleString("en-US")} bytes bounced through swiotlb`));
  }
  return {
    scenario: s.name,
    kind: s.workload.kind,
    api: ctx.api,
    iommu: ctx.iommu,
    ok: checks.every((c) => c.ok),
    checks,
    mapped: out.mapped,
    counters: costs.counters,
    apiCalls: apiCallsOf(costs.counters),
    modelledNs: costs.totalNs,
    assumedNs: costs.assumedNs,
    metrics: out.metrics,
  };
}

/** Deterministic bytes: a buffer's content says where it came from (patternBytes of @dmasim/memory). */
export const pattern = patternBytes;

export function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
