import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { builtinScenario } from "../builtins.js";
import { readFileSync } from "node:fs";
import { parseScenario } from "../parse.js";
import { validateScenario } from "../validate.js";
import { ScenarioError } from "../errors.js";
import type { Api, Scenario } from "../types.js";
import { runScenario } from "./index.js";
import type { RunResult } from "./result.js";

function scenario(name: string): Scenario {
  const s = builtinScenario(name);
  if (s === undefined) throw new Error(`no built-in ${name}`);
  return s;
}

function run(name: string, api: Api, iommu: "strict" | "lazy" = "strict"): RunResult {
  return runScenario(scenario(name), { api, iommu });
}

function expectAllOk(r: RunResult, names: readonly string[]): void {
  expect(r.checks.filter((c) => !c.ok)).toEqual([]);
  expect(r.ok).toBe(true);
  const have = r.checks.map((c) => c.name);
  for (const n of names) expect(have).toContain(n);
}

const COMMON = ["every byte verified", "every work request completed", "no fault left", "nothing leaked", "no IOMMU fault", "dma-debug clean", "nothing left mapped"];
const c = (r: RunResult, name: keyof RunResult["counters"]): number => r.counters[name] ?? 0;

describe("rdma-odp workloads: rdma-core test_odp.py RC cases", () => {
  it("rc-traffic: SEND/RECV faults on both NICs every iteration; one dma_map_page per fault (classic) vs one IOVA per umem (two-step)", () => {
    const classic = run("odp-rc-traffic", "classic");
    const two = run("odp-rc-traffic", "two-step");
    expectAllOk(classic, [...COMMON, "a fault every iteration"]);
    expectAllOk(two, [...COMMON, "a fault every iteration", "batched variant"]);
    for (const r of [classic, two]) expect(r.metrics).toMatchObject({ iterations: 10, verifiedBytes: 10 * 1024, nicFaults: 20, nicFaultErrors: 0 });
    expect(c(classic, "DmaMapCalls")).toBe(20);
    expect(c(classic, "IovaAllocCache") + c(classic, "IovaAllocTree")).toBe(20);
    expect(c(two, "DmaIovaLinks")).toBe(20);
    // One IOVA per ODP umem (one MR on each NIC), reserved at registration.
    expect(c(two, "IovaAllocCache") + c(two, "IovaAllocTree")).toBe(2);
    expect(two.modelledNs).toBeLessThan(classic.modelledNs);
  });

  it("rdma-write, rdma-read and atomic fault on the responder every iteration and verify every byte", () => {
    for (const name of ["odp-rdma-write", "odp-rdma-read", "odp-atomic"]) {
      for (const api of ["classic", "two-step"] as const) {
        const r = run(name, api);
        expectAllOk(r, [...COMMON, "a fault every iteration"]);
        expect(r.metrics.nicFaults).toBeGreaterThanOrEqual(10);
      }
    }
    // Fetch-and-add's and compare-and-swap's old values and the swapped word: 24 bytes per iteration.
    expect(run("odp-atomic", "two-step").metrics.verifiedBytes).toBe(10 * 24);
  });

  it("prefetch sync, async and no-fault: the WRITE or READ after the advice faults nothing on the responder", () => {
    for (const [name, check] of [
      ["odp-prefetch-sync", "prefetch left nothing to fault"],
      ["odp-prefetch-async", "prefetch left nothing to fault"],
      ["odp-prefetch-no-fault", "PREFETCH_NO_FAULT mapped only what was present"],
    ] as const) {
      for (const api of ["classic", "two-step"] as const) expectAllOk(run(name, api), [...COMMON, check]);
    }
  });

  it("huge pages: one fault maps all 512 entries of the 2 MiB page; the batched variant syncs once per fault", () => {
    const two = run("odp-huge-pages", "two-step");
    expectAllOk(two, [...COMMON, "one fault maps the huge page"]);
    expect(two.metrics.odpMttEntries).toBe(512);
    // Both NICs fault their 2 MiB buffer once: 2 × 512 links, 2 syncs batched.
    expect(c(two, "DmaIovaLinks")).toBe(1024);
    expect(two.metrics.batchedIotlbSyncs).toBe(2);
    expectAllOk(run("odp-huge-pages", "classic"), ["one fault maps the huge page"]);
  });

  it("implicit ODP: children made on demand, every iteration faults, nothing left after deregistration", () => {
    for (const api of ["classic", "two-step"] as const) {
      const r = run("odp-implicit", api);
      expectAllOk(r, [...COMMON, "a fault every iteration"]);
      expect(r.metrics.nicFaults).toBe(20);
    }
  });
});

describe("rdma-odp workloads: the hodgepodge MR and the comparison", () => {
  it("hodgepodge: one ODP MR over six kinds of memory, read and written through madvise, fork and migrations, strict and lazy", () => {
    for (const iommu of ["strict", "lazy"] as const) {
      const r = run("odp-hodgepodge", "two-step", iommu);
      expectAllOk(r, [...COMMON, "pages migrated to the GPU", "the GPU took its pages twice", "no stale MTT entry", "batched variant"]);
      expect(r.mapped.join("\n")).toContain("anon ×16, thp ×512, file ×16, bar-switch ×8, bar-bridge ×8, devpriv ×16");
      expect(r.metrics.verifiedBytes).toBeGreaterThan(3 * 576 * 64);
      expect(r.metrics.invalidations).toBeGreaterThan(0);
    }
  });

  it("hodgepodge with an implicit MR holds too", () => {
    const s = scenario("odp-hodgepodge");
    const w = s.workload.kind === "rdma-odp" ? s.workload : undefined;
    if (w === undefined) throw new Error("not rdma-odp");
    expectAllOk(runScenario({ ...s, workload: { ...w, implicit: true } }, { api: "two-step", iommu: "strict" }), COMMON);
  });

  it("nic-workload: the three-way comparison's counters (2 MiB in 64 KiB WQEs)", () => {
    const classic = run("odp-nic-workload", "classic");
    const two = run("odp-nic-workload", "two-step");
    expectAllOk(classic, [...COMMON, "one fault per WQE, none in the steady state", "the invalidation unmapped every page"]);
    expectAllOk(two, [...COMMON, "batched variant"]);
    expect(classic.metrics).toMatchObject({ pages: 512, bookkeepingBytesPerPage: 16, iovaAllocations: 512, pteWrites: 512, iotlbSyncs: 512, nicFaults: 32, verifiedBytes: 2 * 512 * 4096 });
    expect(two.metrics).toMatchObject({ bookkeepingBytesPerPage: 8 + 16 / 512, iovaAllocations: 1, pteWrites: 512, iotlbSyncs: 512, nicFaults: 32 });
    // The batched variant: one sync per fault (32) plus the pinned source buffer's one.
    expect(two.metrics.batchedIotlbSyncs).toBe(33);
    const latency = (r: RunResult, k: "modelledFaultLatencyNs" | "batchedFaultLatencyNs"): number => r.metrics[k] ?? Infinity;
    expect(latency(two, "batchedFaultLatencyNs")).toBeLessThan(latency(two, "modelledFaultLatencyNs"));
    expect(latency(two, "modelledFaultLatencyNs")).toBeLessThan(latency(classic, "modelledFaultLatencyNs"));
    expect(two.metrics.modelledMBps).toBeGreaterThan(classic.metrics.modelledMBps ?? Infinity);
    expect(two.metrics.steadyNs).toBe(classic.metrics.steadyNs);
  });
});

describe("rdma-odp scenario files", () => {
  const base = (): Record<string, unknown> => JSON.parse(JSON.stringify(scenario("odp-rdma-write"))) as Record<string, unknown>;
  const issues = (patch: Record<string, unknown>): unknown => {
    const s = base();
    s.workload = { ...(s.workload as object), ...patch };
    try {
      validateScenario(s);
      return [];
    } catch (e) {
      if (!(e instanceof ScenarioError)) throw e;
      return e.issues.map((i) => [i.path, i.expected]);
    }
  };

  it("refuses unknown tests, fields the test would ignore, a peer not on the platform and implicit huge pages", () => {
    expect(issues({})).toEqual([]);
    expect(issues({ test: "rdma-wirte" })).toEqual([["scenario.workload.test", expect.stringContaining('one of "rc-traffic"')]]);
    expect(issues({ pages: 16 })).toEqual([["scenario.workload.pages", expect.stringContaining("only nic-workload")]]);
    expect(issues({ switchBar: "0000:03:00.0" })).toEqual([["scenario.workload.switchBar", expect.stringContaining("only the hodgepodge")]]);
    expect(issues({ peer: "0000:09:00.0" })).toEqual([["scenario.workload.peer", expect.stringContaining("an endpoint of the platform")]]);
    expect(issues({ test: "huge-pages", implicit: true })).toEqual([["scenario.workload.implicit", expect.stringContaining("explicit MR")]]);
    expect(issues({ test: "nic-workload", pages: 4, wqeBytes: 65536 })).toEqual([["scenario.workload.wqeBytes", "at most the MR (16384 bytes)"]]);
  });

  it("examples/odp-loopback-implicit.json parses and passes under both APIs, 50 faulting iterations each", () => {
    const s = parseScenario(readFileSync(new URL("../../examples/odp-loopback-implicit.json", import.meta.url), "utf8"), "odp-loopback-implicit.json");
    for (const api of ["classic", "two-step"] as const) {
      const r = runScenario(s, { api, iommu: "lazy" });
      expectAllOk(r, [...COMMON, "a fault every iteration"]);
      expect(r.metrics.verifiedBytes).toBe(50 * 8192);
      expect(r.mapped[0]).toContain("(implicit ODP)");
    }
  });

  it("runs in loopback when no peer is given", () => {
    const s = scenario("odp-rdma-write");
    const w = s.workload.kind === "rdma-odp" ? s.workload : undefined;
    if (w === undefined) throw new Error("not rdma-odp");
    const { peer: _peer, ...loop } = w;
    const r = runScenario({ ...s, workload: loop }, { api: "two-step", iommu: "strict" });
    expectAllOk(r, COMMON);
    expect(r.mapped[0]).toContain("(loopback)");
  });
});

describe("rdma-odp properties", () => {
  it("any test_odp.py case, message size, iteration count, MR kind and API: every check holds and every message is verified", () => {
    const cases = ["rc-traffic", "rdma-write", "rdma-read", "prefetch-sync", "prefetch-async"] as const;
    fc.assert(
      fc.property(
        fc.constantFrom(...cases),
        fc.integer({ min: 8, max: 9000 }),
        fc.integer({ min: 1, max: 4 }),
        fc.boolean(),
        fc.constantFrom<Api>("classic", "two-step"),
        fc.integer({ min: 0, max: 0xffff }),
        (test, messageBytes, iterations, implicit, api, seed) => {
          const s = scenario("odp-rdma-write");
          const w = s.workload.kind === "rdma-odp" ? s.workload : undefined;
          if (w === undefined) throw new Error("not rdma-odp");
          const r = runScenario({ ...s, seed, workload: { ...w, test, messageBytes, iterations, implicit } }, { api, iommu: "strict" });
          expect(r.checks.filter((c) => !c.ok)).toEqual([]);
          expect(r.metrics.verifiedBytes).toBe(iterations * messageBytes);
        },
      ),
      { numRuns: 12, seed: 13 },
    );
  });
});
