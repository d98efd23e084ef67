import { describe, expect, it } from "vitest";
import { ChromeTraceRecorder } from "./chrome-trace.js";
import type { ChromeEvent, ChromeTrace } from "./chrome-trace.js";
import { main } from "./cli.js";
import type { Scenario } from "@dmasim/scenario";
import { builtinScenario, runScenario } from "@dmasim/scenario";

function scenario(name: string): Scenario {
  const s = builtinScenario(name);
  if (s === undefined) throw new Error(name);
  return s;
}

/** Trace JSON as `dmasim run <name> --trace` writes it. */
function traceOf(argv: readonly string[]): ChromeTrace {
  let file = "";
  const code = main([...argv, "--trace", "trace.json"], {
    out: () => undefined,
    err: () => undefined,
    stderrIsTTY: false,
    outputProblem: () => undefined,
    schemaUrl: "file:///scenario.schema.json",
    writeFile: (_p, d) => {
      file = d;
    },
  });
  expect(code).toBe(0);
  return JSON.parse(file) as ChromeTrace;
}

describe("Chrome trace export", () => {
  it("is valid trace-event JSON: balanced, nested B/E slices per thread with non-decreasing timestamps", () => {
    const t = traceOf(["run", "sg-256", "--api", "two-step"]);
    expect(t.displayTimeUnit).toBe("ns");
    const stacks = new Map<string, string[]>();
    const lastTs = new Map<string, number>();
    for (const e of t.traceEvents) {
      expect(typeof e.pid).toBe("number");
      expect(typeof e.tid).toBe("number");
      expect(Number.isFinite(e.ts)).toBe(true);
      if (e.ph !== "B" && e.ph !== "E") continue;
      const key = `${e.pid}/${e.tid}`;
      expect(e.ts).toBeGreaterThanOrEqual(lastTs.get(key) ?? 0);
      lastTs.set(key, e.ts);
      const stack = stacks.get(key) ?? [];
      stacks.set(key, stack);
      if (e.ph === "B") stack.push(e.name);
      else expect(stack.pop()).toBe(e.name);
    }
    for (const stack of stacks.values()) expect(stack).toEqual([]);
  });

  it("has the DMA API calls as slices, named as in the kernel, with widths from the cost model", () => {
    const t = traceOf(["run", "sg-256", "--api", "two-step"]);
    const begins = t.traceEvents.filter((e) => e.ph === "B");
    const count = (name: string): number => begins.filter((e) => e.name === name).length;
    expect(count("dma_map_sgtable")).toBe(4);
    expect(count("dma_iova_link")).toBe(4 * 256);
    expect(count("dma_iova_sync")).toBe(4);
    const ends = t.traceEvents.filter((e) => e.ph === "E");
    const last = ends[ends.length - 1];
    expect(last?.ts).toBeGreaterThan(10); // µs: the modelled time of 4 maps of 256 pages
  });

  it("names the process after the run and the thread after the device", () => {
    const t = traceOf(["run", "sg-256", "--api", "classic", "--iommu", "lazy"]);
    const meta = t.traceEvents.filter((e) => e.ph === "M");
    expect(meta).toContainEqual(expect.objectContaining({ name: "process_name", args: { name: "sg-256 classic/lazy" } }));
    expect(meta).toContainEqual(expect.objectContaining({ name: "thread_name", args: { name: "0000:02:00.0" } }));
  });

  it("draws counters as C events whose values only grow and end at the run's totals", () => {
    const rec = new ChromeTraceRecorder();
    const r = runScenario(scenario("sg-256"), { api: "classic", iommu: "strict", onHost: rec.attach.bind(rec) });
    rec.detach();
    const counters = rec.toJSON().traceEvents.filter((e): e is ChromeEvent & { args: Record<string, number> } => e.ph === "C");
    const pte = counters.filter((e) => e.name === "IO page table").map((e) => e.args["PTE writes"] ?? -1);
    expect(pte.length).toBeGreaterThan(1);
    for (let i = 1; i < pte.length; i++) expect(pte[i]).toBeGreaterThanOrEqual(pte[i - 1] ?? 0);
    expect(pte[pte.length - 1]).toBe(r.counters.PteWrites);
    const syncs = counters.filter((e) => e.name === "IOTLB").map((e) => e.args.sync_map ?? -1);
    expect(syncs[syncs.length - 1]).toBe(4);
  });

  it("marks the stale-window probes' IOMMU faults and the flush-queue flush as instants", () => {
    const t = traceOf(["run", "lazy-stale-window", "--iommu", "lazy"]);
    const instants = t.traceEvents.filter((e) => e.ph === "i").map((e) => e.name);
    expect(instants).toContain("IOMMU fault (not-mapped)");
    expect(instants.some((n) => n.startsWith("flush queue flush"))).toBe(true);
  });

  it("gives each run of a sweep its own process", () => {
    const t = traceOf(["compare", "p2p-host-bridge", "--api", "classic,two-step", "--iommu", "strict"]);
    const names = t.traceEvents.filter((e) => e.name === "process_name").map((e) => e.args?.name);
    expect(names).toEqual(["p2p-host-bridge classic/strict", "p2p-host-bridge two-step/strict"]);
  });

  it("records nothing, and costs nothing, when not asked", () => {
    const s = scenario("sg-256");
    const plain = runScenario(s, { api: "two-step", iommu: "strict" });
    const rec = new ChromeTraceRecorder();
    const traced = runScenario(s, { api: "two-step", iommu: "strict", onHost: rec.attach.bind(rec) });
    // Listening must not change what the model does.
    expect(traced.counters).toEqual(plain.counters);
  });
});
