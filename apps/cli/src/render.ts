import { bytes, ns, table } from "./format.js";
import type { Cell } from "./format.js";
import type { RunResult, Scenario, WorkloadKind } from "@dmasim/scenario";
import { totalApiCalls } from "@dmasim/scenario";

/** Columns particular to a workload kind: metric key, header, how to print it. */
const KIND_COLUMNS: Readonly<Record<WorkloadKind, readonly (readonly [string, string, (v: number) => Cell])[]>> = {
  nvme: [["verifiedBytes", "verified", bytesCell]],
  sg: [["dmaSegments", "DMA segs", (v) => v]],
  single: [["verifiedBytes", "verified", bytesCell]],
  p2p: [
    ["tlpsPeerViaSwitch", "TLPs in switch", (v) => v],
    ["tlpsPeerViaHostBridge", "TLPs via RC", (v) => v],
  ],
  "stale-window": [
    ["staleReads", "stale reads", (v) => v],
    ["windowNs", "stale window", (v) => (v === 0 ? "none" : ns(v))],
  ],
  hmm: [
    ["deviceFaults", "dev faults", (v) => v],
    ["invalidations", "invalidations (mm)", (v) => v],
    ["batchedIotlbSyncs", "batched syncs", (v) => (v === 0 ? "-" : v)],
    ["batchedModelledNs", "batched modelled", (v) => (v === 0 ? "-" : ns(v))],
  ],
  "rdma-odp": [
    ["nicFaults", "NIC faults", (v) => v],
    ["modelledFaultLatencyNs", "per fault", (v) => (v === 0 ? "-" : ns(v))],
    ["batchedIotlbSyncs", "batched syncs", (v) => (v === 0 ? "-" : v)],
    ["batchedFaultLatencyNs", "batched per fault", (v) => (v === 0 ? "-" : ns(v))],
  ],
  dmabuf: [
    ["invalidations", "invalidations (dma-buf)", (v) => v],
    ["fenceWaitNs", "fence waits", (v) => (v === 0 ? "-" : ns(v))],
    ["metadataBytes", "map metadata", (v) => (v === 0 ? "-" : bytesCell(v))],
    ["remapIovaAllocs", "remap IOVAs", (v) => v],
    ["remapPteWrites", "remap PTEs", (v) => (v === 0 ? "-" : v)],
  ],
};

function bytesCell(v: number): string {
  if (v >= 1024 * 1024) return `${(v / (1024 * 1024)).toFixed(1)} MiB`;
  if (v >= 1024) return v % 1024 === 0 ? bytes(v) : `${(v / 1024).toFixed(1)} KiB`;
  return `${v} B`;
}

function invalidations(r: RunResult): number {
  const c = r.counters;
  return (c.IotlbInvalRange ?? 0) + (c.IotlbInvalDomain ?? 0) + (c.IotlbInvalGlobal ?? 0) + (c.IotlbInvalDevice ?? 0);
}

/** The cost table: one row per run, counters and modelled time side by side. */
export function resultsTable(results: readonly RunResult[]): string {
  const kind = results[0]?.kind ?? "single";
  const extra = KIND_COLUMNS[kind];
  const header = ["IOMMU", "API", "API calls", "IOVA allocs", "PTE writes", "IOTLB syncs", "invalidations", "bounced", "modelled (assumed)", ...extra.map((c) => c[1]), "verdict"];
  const rows = results.map((r) => {
    const c = r.counters;
    return [
      r.iommu,
      r.api,
      totalApiCalls(r),
      (c.IovaAllocCache ?? 0) + (c.IovaAllocTree ?? 0),
      c.PteWrites ?? 0,
      c.IotlbSyncMap ?? 0,
      invalidations(r),
      bytesCell(c.SwiotlbBounceBytes ?? 0),
      `${ns(r.modelledNs)} (${ns(r.assumedNs)})`,
      ...extra.map(([key, , fmt]) => fmt(r.metrics[key] ?? 0)),
      r.ok ? "ok" : "FAILED",
    ];
  });
  return table(header, rows);
}

/** What was mapped and how (per API when they differ), the checks, then the cost table. */
export function renderScenario(s: Scenario, results: readonly RunResult[]): string {
  const ok = results.every((r) => r.ok);
  const out = [`== ${s.name}: ${s.description} ${ok ? "[ok]" : "[CHECK FAILED]"}`];
  const seen = new Set<string>();
  for (const r of results) {
    const text = r.mapped.join("\n      ");
    if (text === "" || seen.has(text)) continue;
    seen.add(text);
    out.push(`  ${r.api.padEnd(8)}  ${text}`);
  }
  const names = [...new Set(results.flatMap((r) => r.checks.map((c) => c.name)))];
  for (const name of names) {
    const runs = results.filter((r) => r.checks.some((c) => c.name === name));
    const failed = runs.filter((r) => r.checks.some((c) => c.name === name && !c.ok));
    if (failed.length === 0) {
      const first = runs[0]?.checks.find((c) => c.name === name);
      out.push(`  ✓ ${name}${runs.length > 1 ? ` (${runs.length} runs)` : ""}: ${first?.detail ?? ""}`);
    } else {
      for (const r of failed) out.push(`  ✗ ${name} (${r.api}/${r.iommu}): ${r.checks.find((c) => c.name === name && !c.ok)?.detail ?? ""}`);
    }
  }
  out.push("", indent(resultsTable(results), "  "));
  return out.join("\n");
}

/** One run in detail: checks, every counter that moved, the API calls. */
export function renderRun(s: Scenario, r: RunResult, profile?: string): string {
  const out = [`== ${s.name} (${r.api}, IOMMU ${r.iommu}${profile === undefined ? "" : `, cost profile ${profile}`}): ${s.description} ${r.ok ? "[ok]" : "[CHECK FAILED]"}`];
  for (const m of r.mapped) out.push(`  ${m}`);
  for (const c of r.checks) out.push(`  ${c.ok ? "✓" : "✗"} ${c.name}: ${c.detail}`);
  out.push("", indent(resultsTable([r]), "  "), "");
  const calls = Object.entries(r.apiCalls).map(([k, v]) => [k, v] as const);
  if (calls.length > 0) out.push(indent(table(["DMA API call", "count"], calls), "  "), "");
  const counters = Object.entries(r.counters).map(([k, v]) => [k, v] as const);
  out.push(indent(table(["counter", "value"], counters), "  "));
  return out.join("\n");
}

function indent(text: string, pad: string): string {
  return text
    .split("\n")
    .map((l) => pad + l)
    .join("\n");
}

export const READING_NOTE = readingNote();

/** The note under a results table, naming the cost profile that priced it (`default` unless one was chosen). */
export function readingNote(profile = "default"): string {
  const which = profile === "default" ? "the default cost profile" : `the "${profile}" cost profile`;
  return (
    `API calls: DMA API calls made (dma_map_*, dma_iova_*, unmaps, syncs). Modelled time prices the counters with ${which};\n` +
    "in brackets the part resting on assumed figures (packages/dma README). Counters are exact, times are a model."
  );
}
