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
    const syncs = counters.filter((e) => e.name === "IOTLB invalidations").map((e) => e.args.sync_map ?? -1);
    expect(syncs[syncs.length - 1]).toBe(4);
  });

  it("marks the stale-window probes' IOMMU faults and the flush-queue flush as instants", () => {
    const t = traceOf(["run", "lazy-stale-window", "--iommu", "lazy"]);
    const instants = t.traceEvents.filter((e) => e.ph === "i").map((e) => e.name);
    expect(instants).toContain("IOMMU fault (not-mapped)");
    expect(instants.some((n) => n.startsWith("flush queue flush"))).toBe(true);
  });

  it("a real lazy trace follows the format and tells the truth: every invalidation, samples at flushes, occupancy, device accesses", () => {
    const t = traceOf(["run", "lazy-stale-window", "--api", "classic", "--iommu", "lazy"]);
    const raw = t as unknown as Record<string, unknown>;
    // The format rules Perfetto's JSON importer relies on.
    expect(Object.keys(raw)).toEqual(["traceEvents"]);
    const stacks = new Map<string, { name: string; ts: number }[]>();
    for (const e of t.traceEvents) {
      expect(["B", "E", "C", "M", "i"]).toContain(e.ph);
      expect(Number.isInteger(e.pid) && Number.isInteger(e.tid)).toBe(true);
      expect(Number.isFinite(e.ts) && e.ts >= 0).toBe(true);
      if (e.ph === "C") for (const v of Object.values(e.args ?? {})) expect(typeof v).toBe("number");
      if (e.ph === "i") expect(["t", "p", "g"]).toContain(e.s);
      if (e.ph === "M") expect(["process_name", "process_sort_index", "thread_name"]).toContain(e.name);
      const key = `${e.pid}/${e.tid}`;
      const stack = stacks.get(key) ?? [];
      stacks.set(key, stack);
      if (e.ph === "B") stack.push({ name: e.name, ts: e.ts });
      if (e.ph === "E") {
        const b = stack.pop();
        expect(b?.name).toBe(e.name);
        // No zero-width slice.
        expect(e.ts).toBeGreaterThan(b?.ts ?? Infinity);
      }
    }
    for (const stack of stacks.values()) expect(stack).toEqual([]);
    // The IOTLB track counts every invalidation kind; in lazy mode the flush queue's domain flushes.
    const counters = t.traceEvents.filter((e) => e.ph === "C");
    const inval = counters.filter((e) => e.name === "IOTLB invalidations").at(-1);
    const flushes = t.traceEvents.filter((e) => e.ph === "i" && e.name.startsWith("flush queue flush"));
    expect(flushes.length).toBeGreaterThan(0);
    expect(inval?.args?.domain).toBe(flushes.length);
    const domainInstants = t.traceEvents.filter((e) => e.name === "IOTLB domain invalidation");
    expect(domainInstants).toHaveLength(flushes.length);
    const threads = new Map(t.traceEvents.filter((e) => e.name === "thread_name").map((e) => [e.tid, e.args?.name]));
    expect(threads.get(domainInstants[0]!.tid)).toBe("IOTLB (iommu0)");
    // Counters are sampled at the flush (a timer), not only when an API call ends.
    for (const d of domainInstants) expect(counters.some((c) => c.ts === d.ts && c.name === "IOTLB invalidations")).toBe(true);
    for (const f of flushes) expect(counters.find((c) => c.ts === f.ts && c.name === "flush queue fill")?.args?.entries).toBe(0);
    // Occupancy: IOVA space in use rises and falls; the flush queue fills, then drains at the flush.
    const iova = counters.filter((e) => e.name === "IOVA space in use").map((e) => e.args?.bytes as number);
    expect(Math.max(...iova)).toBeGreaterThan(0);
    const fill = counters.filter((e) => e.name === "flush queue fill").map((e) => e.args?.entries as number);
    expect(Math.max(...fill)).toBeGreaterThan(0);
    expect(fill.at(-1)).toBe(0);
    expect(counters.some((e) => e.name === "IOTLB entries")).toBe(true);
    expect(counters.some((e) => e.name === "IO page table mapped")).toBe(true);
    // Device accesses: reads and the stale hit of the lazy window, on the device's thread, in time order.
    const dev = t.traceEvents.filter((e) => e.ph === "i" && threads.get(e.tid) === "0000:02:00.0");
    expect(dev.some((e) => e.name === "DMA read" || e.name === "DMA write")).toBe(true);
    expect(dev.some((e) => e.name === "stale IOTLB hit")).toBe(true);
    const order = dev.map((e) => e.ts);
    expect(order).toEqual([...order].sort((a, b) => a - b));
  });

  it("draws where a GPU dma-buf lives as a counter track that follows each move", () => {
    const t = traceOf(["run", "dmabuf-migrate", "--api", "two-step", "--iommu", "strict"]);
    const placement = t.traceEvents.filter((e) => e.ph === "C" && e.name.startsWith("dma-buf gpu:") && e.name.endsWith(" blocks"));
    expect(placement.length).toBeGreaterThanOrEqual(3);
    const vram = placement.map((e) => e.args?.VRAM);
    // Created in VRAM, moved to RAM, moved back.
    expect(vram[0]).toBeGreaterThan(0);
    expect(vram).toContain(0);
    expect(vram.at(-1)).toBe(vram[0]);
    expect(t.traceEvents.some((e) => e.ph === "i" && e.name === "move to ram")).toBe(true);
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
