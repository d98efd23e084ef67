import { createDmaKernel } from "@dmasim/dma";
import { MADV_DONTNEED, Mm, MmSystem } from "@dmasim/hmm-odp";
import { PAGE_SIZE } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { builtinScenario } from "../builtins.js";
import { RunLogRecorder } from "../event-log.js";
import { ScenarioError } from "../errors.js";
import { parseScenario } from "../parse.js";
import { sweep } from "../sweep.js";
import type { Api, Scenario } from "../types.js";
import { validateScenario } from "../validate.js";
import { PfnListMirror } from "./hmm-pfn-list.js";
import { runScenario } from "./index.js";
import type { RunResult } from "./result.js";

function scenario(name: string): Scenario {
  const s = builtinScenario(name);
  if (s === undefined) throw new Error(`no built-in ${name}`);
  return s;
}

function run(name: string, api: Api, iommu: "strict" | "lazy" | "passthrough" = "strict"): RunResult {
  return runScenario(scenario(name), { api, iommu });
}

function checkOf(r: RunResult, name: string): { ok: boolean; detail: string } {
  const c = r.checks.find((x) => x.name === name);
  if (c === undefined) throw new Error(`no check "${name}" in ${r.checks.map((x) => x.name).join(", ")}`);
  return c;
}

/** Every check of the run held, and each name given is among them. */
function expectAllOk(r: RunResult, names: readonly string[]): void {
  expect(r.checks.filter((c) => !c.ok)).toEqual([]);
  expect(r.ok).toBe(true);
  for (const n of names) expect(checkOf(r, n).ok).toBe(true);
}

const COMMON = ["device saw the right bytes", "notifier sequence consistent", "no IOMMU fault", "dma-debug clean", "nothing left mapped", "counters add up"];

describe("hmm workloads", () => {
  it("fault-in: one dma_map_page (an IOVA, a PTE write, a sync) per page vs one IOVA for the range vs one sync per 64 links", () => {
    const classic = run("hmm-fault-in", "classic");
    const two = run("hmm-fault-in", "two-step");
    expectAllOk(classic, [...COMMON, "no fault on a re-read"]);
    expectAllOk(two, [...COMMON, "no fault on a re-read", "batched variant"]);
    expect(checkOf(two, "batched variant").detail).toBe("the same 9 checks held; 16 IOTLB sync(s) for 1,024 dma_iova_link(s) and 1,024 PTE write(s)");
    const c = classic.counters;
    expect(c.DmaMapCalls).toBe(1024);
    expect((c.IovaAllocCache ?? 0) + (c.IovaAllocTree ?? 0)).toBe(1024);
    expect(c.IotlbSyncMap).toBe(1024);
    expect(two.counters.DmaIovaTryAllocs).toBe(1);
    expect(two.counters.DmaIovaLinks).toBe(1024);
    expect(two.counters.IotlbSyncMap).toBe(1024);
    expect(two.metrics.batchedPteWrites).toBe(1024);
    expect(two.metrics.batchedIotlbSyncs).toBe(1024 / 64);
    expect(classic.metrics.deviceFaults).toBe(1);
    expect(two.metrics.deviceFaults).toBe(1);
    expect(two.metrics.invalidations).toBe(0);
    // The pfn list plus a dma_addr_t per page against hmm_dma_map's pfn list alone.
    expect(classic.metrics.bookkeepingBytesPerPage).toBeGreaterThan(2 * (two.metrics.bookkeepingBytesPerPage ?? 0));
    expect(two.metrics.batchedModelledNs).toBeLessThan(two.modelledNs);
    expect(two.modelledNs).toBeLessThan(classic.modelledNs);
  });

  it("fault-in holds under a lazy IOMMU and in passthrough (hmm_dma_map without an IOVA)", () => {
    for (const api of ["classic", "two-step"] as const) {
      expectAllOk(run("hmm-fault-in", api, "lazy"), COMMON);
      const pt = run("hmm-fault-in", api, "passthrough");
      expectAllOk(pt, ["device saw the right bytes", "nothing left mapped"]);
      expect(pt.counters.PteWrites ?? 0).toBe(0);
      if (api === "two-step") expect(pt.mapped[0]).toContain("hmm_dma_map_alloc without an IOVA");
    }
  });

  it("munmap: the device loses the unmapped half first, gets -EFAULT there and keeps the other half", () => {
    for (const api of ["classic", "two-step"] as const) {
      const r = run("hmm-munmap", api);
      expectAllOk(r, [...COMMON, "no stale translation after munmap", "device access to the unmapped part fails", "the kept half kept its translations"]);
      expect(r.metrics.invalidations).toBe(1);
      expect(r.metrics.deviceFaults).toBe(1);
    }
    expect(checkOf(run("hmm-munmap", "two-step"), "batched variant").ok).toBe(true);
  });

  it("madvise(DONTNEED): translations dropped, the device re-faults every page and reads zeros", () => {
    for (const api of ["classic", "two-step"] as const) {
      const r = run("hmm-madvise", api);
      expectAllOk(r, [...COMMON, "no stale translation after madvise(MADV_DONTNEED)", "device sees zeros after MADV_DONTNEED", "CPU sees zeros too"]);
      expect(r.metrics.deviceFaults).toBe(2);
      expect(r.metrics.cpuFaults).toBe(256);
      expect(r.counters.PteWrites).toBe(512);
    }
  });

  it("fork: COW write-protect invalidates; the device follows the parent to its new pages, the child keeps the old bytes", () => {
    for (const api of ["classic", "two-step"] as const) {
      const r = run("hmm-fork", api);
      expectAllOk(r, [...COMMON, "no stale translation after fork (COW write-protect)", "device sees the parent's write after the COW break", "the child keeps the old bytes", "no stale translation after the COW break"]);
      expect(r.metrics.invalidations).toBeGreaterThanOrEqual(1 + 256);
    }
  });

  it("migrate: pages go to a peer's device-private memory and come back to RAM when the device faults them", () => {
    for (const api of ["classic", "two-step"] as const) {
      const r = run("hmm-migrate", api);
      expectAllOk(r, [...COMMON, "migrated to device-private memory", "no stale translation after migration to device-private memory", "device faults the pages back and sees the same bytes", "back in system memory"]);
    }
  });

  it("a run log records the batched variant's host as a run of its own, the result with the per-entry run", () => {
    const s = scenario("hmm-munmap");
    const rec = new RunLogRecorder(s);
    const r = runScenario(s, { api: "two-step", iommu: "strict", onHost: rec.attach });
    rec.detach();
    const log = rec.toJSON([r]);
    expect(log.runs.map((x) => [x.label, x.api, x.iommu, x.result === undefined])).toEqual([
      ["hmm-munmap two-step/strict", "two-step", "strict", false],
      ["hmm-munmap batched two-step/strict", "two-step", "strict", true],
    ]);
    const syncs = (i: number): number => log.runs[i]?.events.filter((e) => e.type === "iotlb.sync-map").length ?? -1;
    expect(syncs(0)).toBe(256);
    expect(syncs(1)).toBe(4);
  });

  it("an untrusted device: hmm_dma_map_alloc refuses it (-EOPNOTSUPP) and the two-step run fails with its errno", () => {
    const s: Scenario = { ...scenario("hmm-fault-in"), platform: { memory: { ramBytes: 1 << 30 }, iommu: {}, endpoints: [{ bdf: "0000:01:00.0", untrusted: true }] } };
    const two = runScenario(s, { api: "two-step", iommu: "strict" });
    expect(two.ok).toBe(false);
    expect(checkOf(two, "run completed").detail).toBe("HmmStateError: dmirror_open: hmm_dma_map_alloc on 0000:01:00.0 returned -95");
    // The pfn-list driver maps page by page (bouncing where it must) and still sees the right bytes.
    expect(checkOf(runScenario(s, { api: "classic", iommu: "strict" }), "device saw the right bytes").ok).toBe(true);
  });

  it("a seed reproduces a run exactly", () => {
    const a = run("hmm-fork", "two-step");
    const b = run("hmm-fork", "two-step");
    expect(b.counters).toEqual(a.counters);
    expect(b.metrics).toEqual(a.metrics);
  });
});

describe("the pfn-list driver", () => {
  function rig(): { mm: Mm; p: PfnListMirror; addr: number; kernelReports: () => number } {
    const platform = createPlatform({ memory: { ramBytes: 1 << 30 }, iommu: {}, endpoints: [{ bdf: "0000:01:00.0" }] });
    const kernel = createDmaKernel(platform, { swiotlb: false, debug: "collect" });
    const mm = new Mm(new MmSystem(kernel));
    const addr = mm.mmap(8 * PAGE_SIZE);
    mm.write(addr, new Uint8Array(8 * PAGE_SIZE).fill(7));
    return { mm, p: new PfnListMirror(kernel.device("0000:01:00.0"), mm, addr, 8 * PAGE_SIZE), addr, kernelReports: () => kernel.debugReports().length };
  }

  it("maps a page per dma_map_page, drops them in the invalidate callback, unmaps all at close", () => {
    const { mm, p, addr, kernelReports } = rig();
    const buf = new Uint8Array(8 * PAGE_SIZE);
    expect(p.deviceRead(addr, buf)).toBe(0);
    expect(buf.every((b) => b === 7)).toBe(true);
    expect(p.liveTranslations(addr, addr + 8 * PAGE_SIZE)).toBe(8);
    expect(p.translate(addr)?.phys).toBe((mm.pteAt(addr)?.pfn ?? -1) * PAGE_SIZE);
    mm.madvise(addr + 2 * PAGE_SIZE, 2 * PAGE_SIZE, MADV_DONTNEED);
    expect(p.liveTranslations(addr, addr + 8 * PAGE_SIZE)).toBe(6);
    expect(p.translate(addr + 2 * PAGE_SIZE)).toBeUndefined();
    p.close();
    expect(p.liveTranslations(addr, addr + 8 * PAGE_SIZE)).toBe(0);
    expect(kernelReports()).toBe(0);
  });

  it("reads outside its window fail with -EFAULT without touching the device", () => {
    const { p, addr } = rig();
    expect(p.deviceRead(addr + 8 * PAGE_SIZE, new Uint8Array(PAGE_SIZE))).toBe(-14);
    expect(p.faults).toBe(0);
    p.close();
  });
});

describe("hmm workload validation", () => {
  const base = { name: "x", description: "d", platform: { memory: { ramBytes: 1 << 30 }, iommu: {}, endpoints: [{ bdf: "0000:01:00.0" }] } };

  it("accepts every event and refuses an unknown one, a bad page count and an unknown field, with their paths", () => {
    for (const event of ["fault-in", "munmap", "madvise", "fork", "migrate"]) {
      expect(validateScenario({ ...base, workload: { kind: "hmm", device: "0000:01:00.0", event } }).workload.kind).toBe("hmm");
    }
    let err: unknown;
    try {
      validateScenario({ ...base, workload: { kind: "hmm", device: "0000:01:00.0", event: "mremap", pages: 0, huge: true } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ScenarioError);
    const paths = (err as ScenarioError).issues.map((i) => i.path).sort();
    expect(paths).toEqual(["scenario.workload.event", "scenario.workload.huge", "scenario.workload.pages"]);
  });

  it("refuses a device that is not on the platform", () => {
    expect(() => validateScenario({ ...base, workload: { kind: "hmm", device: "0000:09:00.0", event: "fork" } })).toThrow(ScenarioError);
  });
});

describe("hmm races", () => {
  it("an invalidation injected at each step of the first fault is caught: retried or re-faulted, never a stale translation", () => {
    for (const race of ["after-read-begin", "in-hmm-range-fault", "before-driver-lock", "before-read-retry"] as const) {
      const base = scenario("hmm-fault-in");
      const s: Scenario = { ...base, workload: { kind: "hmm", device: "0000:01:00.0", event: "fault-in", pages: 64, race } };
      for (const api of ["classic", "two-step"] as const) {
        const r = runScenario(s, { api, iommu: "strict" });
        expectAllOk(r, ["device saw the right bytes", `the race ${race} was caught`, "notifier sequence consistent", "no fault on a re-read"]);
        expect(r.metrics.invalidations).toBe(1);
        // Before the driver lock the stale sequence makes read_retry fail; under the lock the
        // invalidation waits, drops the fresh translation, and the device faults that page again.
        if (race === "before-read-retry") {
          expect(r.metrics.retries).toBe(0);
          expect(r.metrics.deviceFaults).toBe(2);
        } else {
          expect(r.metrics.retries).toBe(1);
          expect(r.metrics.deviceFaults).toBe(1);
        }
      }
    }
  });
});

describe("the hmm example file", () => {
  it("parses, and every run of its sweep passes: the race inside hmm_range_fault, then fork and the COW write", () => {
    const s = parseScenario(readFileSync(new URL("../../examples/hmm-fork-race.json", import.meta.url), "utf8"), "hmm-fork-race.json");
    const results = sweep(s, { api: ["classic", "two-step"], iommu: ["strict", "lazy"] });
    expect(results).toHaveLength(4);
    for (const r of results) {
      expectAllOk(r, ["the race in-hmm-range-fault was caught", "no stale translation after the COW break", "the child keeps the old bytes", "no page leaked"]);
      expect(r.metrics.retries).toBe(1);
    }
  });
});
