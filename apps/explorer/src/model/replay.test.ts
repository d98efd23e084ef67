import fc from "fast-check";
import { builtinScenario, readRunLog, type Scenario } from "@dmasim/scenario";
import { describe, expect, test } from "vitest";
import { describeEvent, failureIndices, isFailure, nextFailure } from "./events.js";
import { IovaState, iovaStateAt, pixelStates, staleEntries, zoom } from "./iova-space.js";
import { pageTableTree, treeTotals } from "./page-table.js";
import { applyEvent, initialState, leavesFor, Replay } from "./replay.js";
import { runInPage, runsOfLog, type RunView } from "./run.js";
import { countSeries, scrollToRow, visibleRows } from "./series.js";
import { routeOf } from "./topology.js";

function scenario(name: string): Scenario {
  const s = builtinScenario(name);
  if (s === undefined) throw new Error(`no built-in ${name}`);
  return s;
}

function run(runs: readonly RunView[], label: string): RunView {
  const r = runs.find((x) => x.label.endsWith(label));
  if (r === undefined) throw new Error(`no run ${label}`);
  return r;
}

describe("the lazy stale window, derived from the log", () => {
  const { runs } = runInPage(scenario("lazy-stale-window"));

  test("lazy: after the unmap the IOTLB entry is stale until the flush queue's invalidation", () => {
    const r = run(runs, "classic/lazy");
    const unmap = r.events.findIndex((e) => e.type === "iommu.unmap");
    const inval = r.events.findIndex((e) => e.type === "iotlb.invalidate");
    expect(unmap).toBeGreaterThan(0);
    expect(inval).toBeGreaterThan(unmap);
    const dom = r.ctx.deviceDomain["0000:02:00.0"]!;
    const before = r.replay.stateAt(unmap).domains.get(dom)!;
    const iova = (r.events[unmap] as unknown as { iova: number }).iova;
    expect(iovaStateAt(before, iova)).toBe(IovaState.SYNCED);
    const after = r.replay.stateAt(unmap + 1).domains.get(dom)!;
    expect(iovaStateAt(after, iova)).toBe(IovaState.STALE);
    expect(staleEntries(after)).toEqual([{ lo: iova, hi: iova + 4096 }]);
    // The invalidation ends the window; the range waits in the flush queue until its release.
    const flushed = r.replay.stateAt(inval + 1).domains.get(dom)!;
    expect(iovaStateAt(flushed, iova)).toBe(IovaState.QUEUED);
    const release = r.events.findIndex((e) => e.type === "flush-queue.release");
    expect(release).toBeGreaterThan(inval);
    expect(iovaStateAt(r.replay.stateAt(release + 1).domains.get(dom)!, iova)).toBe(IovaState.FREE);
    // Every probe between unmap and flush read through the stale entry: the scenario's own count.
    expect(r.replay.staleTlps.length).toBe(r.result?.metrics.staleReads ?? r.replay.staleTlps.length);
    expect(r.replay.staleTlps.length).toBeGreaterThan(10);
    expect(r.replay.staleTlps.every((i) => i > unmap && i < inval)).toBe(true);
  });

  test("strict: the unmap invalidates at once, nothing is ever stale and the probe faults", () => {
    const r = run(runs, "classic/strict");
    expect(r.replay.staleTlps).toEqual([]);
    const fault = r.events.findIndex((e) => e.type === "iommu.fault");
    expect(nextFailure(failureIndices(r.events), 0)).toBe(fault);
    const s = r.replay.stateAt(fault);
    for (const d of s.domains.values()) expect(staleEntries(d)).toEqual([]);
  });

  test("pixelStates shows a lone 4 KiB stale granule even at 4 GiB zoom", () => {
    const r = run(runs, "classic/lazy");
    const unmap = r.events.findIndex((e) => e.type === "iommu.unmap");
    const d = r.replay.stateAt(unmap + 1).domains.get(1)!;
    const px = pixelStates(d, 0, 2 ** 32, 512);
    expect(px[511]).toBe(IovaState.STALE);
    expect(px.slice(0, 511).every((v) => v === IovaState.FREE)).toBe(true);
  });
});

describe("a recorded run log", () => {
  test("shows the same runs as a run in the page: devices' domains from the lookups, the same stale hits", () => {
    const { log, runs } = runInPage(scenario("lazy-stale-window"));
    const fromLog = runsOfLog(readRunLog(JSON.parse(JSON.stringify(log))));
    expect(fromLog.map((r) => r.label)).toEqual(runs.map((r) => r.label));
    for (const [i, r] of fromLog.entries()) {
      expect(r.ctx.deviceDomain).toEqual(runs[i]!.ctx.deviceDomain);
      expect(r.replay.staleTlps).toEqual(runs[i]!.replay.staleTlps);
      expect(r.topology).toEqual(runs[i]!.topology);
    }
  });
});

describe("P2P routes", () => {
  test("ACS redirect sends peer TLPs up through the root complex and the IOMMU, then down to the peer", () => {
    const { runs } = runInPage(scenario("p2p-acs-redirect"));
    const r = run(runs, "classic/strict");
    const i = r.events.findIndex((e) => e.type === "tlp" && (e as unknown as { path: string }).path === "peer-via-host-bridge");
    const s = r.replay.stateAt(i + 1);
    const d = s.domains.get(r.ctx.deviceDomain["0000:02:00.0"]!)!;
    const route = routeOf(r.topology, r.events[i]!, (iova) => {
      const delta = d.mapped.get(iova);
      return delta === undefined ? undefined : iova + delta;
    });
    expect(route).toEqual(["0000:02:00.0", "sw0.dp0", "sw0", "rp0", "hb0", "IOMMU", "rp0", "sw0", "sw0.dp1", "0000:03:00.0"]);
    expect(r.topology.nodes.find((n) => n.id === "sw0.dp0")?.acs).toBe("RR CR");
  });

  test("without ACS redirect the TLP turns around in the switch", () => {
    const { runs } = runInPage(scenario("p2p-switch"));
    const r = runs[0]!;
    const e = r.events.find((x) => x.type === "tlp" && (x as unknown as { path: string }).path === "peer-via-switch")!;
    expect(routeOf(r.topology, e)).toEqual(["0000:02:00.0", "sw0.dp0", "sw0", "sw0.dp1", "0000:03:00.0"]);
  });
});

describe("IO page table", () => {
  test("iommu_pgsize picks 2 MiB leaves where iova and phys allow, 4 KiB elsewhere", () => {
    const M2 = 2 * 1024 * 1024;
    expect(leavesFor(M2, 4 * M2, 2 * M2 + 8192, 4096 | M2 | 1024 ** 3)).toEqual([
      { iova: M2, level: 2, size: 2 * M2 },
      { iova: 3 * M2, level: 1, size: 8192 },
    ]);
    expect(leavesFor(M2, 4 * M2 + 4096, M2, 4096 | M2)).toEqual([{ iova: M2, level: 1, size: M2 }]);
  });

  test("a map fills one level-1 table; its unmap leaves the table empty", () => {
    const s = initialState();
    const ctx = { deviceDomain: {} };
    applyEvent(s, { type: "iommu.map", t: 0, unit: "u", domain: 3, iova: 0x1000_0000, phys: 0x20_0000, size: 0x10000, prot: 3 } as never, 0, ctx);
    let t = treeTotals(pageTableTree(s.domains.get(3)!));
    expect(t).toEqual({ tables: 4, leaves4k: 16, leaves2m: 0, leaves1g: 0, emptied: 0 });
    applyEvent(s, { type: "iommu.unmap", t: 0, unit: "u", domain: 3, iova: 0x1000_0000, size: 0x10000, unmapped: 0x10000 } as never, 1, ctx);
    t = treeTotals(pageTableTree(s.domains.get(3)!));
    expect(t.leaves4k).toBe(0);
    expect(t.emptied).toBeGreaterThan(0);
  });
});

describe("replay checkpoints", () => {
  test("property: the state at any step equals a replay from the start", () => {
    const { runs } = runInPage({ ...scenario("nvme-4k-randread"), axes: { api: ["two-step"], iommu: ["lazy"] }, workload: { ...(scenario("nvme-4k-randread").workload as object), ops: 60 } as Scenario["workload"] });
    const r = runs[0]!;
    const small = new Replay(r.events, r.ctx, 7);
    fc.assert(
      fc.property(fc.nat(r.events.length), (n) => {
        const fresh = initialState();
        for (let i = 0; i < n; i++) applyEvent(fresh, r.events[i]!, i, r.ctx);
        const got = small.stateAt(n);
        expect(got.step).toBe(n);
        expect([...got.counts]).toEqual([...fresh.counts]);
        expect(got.lastTlp).toBe(fresh.lastTlp);
        for (const [id, d] of fresh.domains) {
          expect(got.domains.get(id)?.mapped.ranges()).toEqual(d.mapped.ranges());
          expect(got.domains.get(id)?.cached.ranges()).toEqual(d.cached.ranges());
        }
      }),
      { numRuns: 30 },
    );
  });
});

describe("timeline helpers", () => {
  test("failures, descriptions, unknown event types", () => {
    const unknown = { type: "hmm.range-fault", t: 5, va: 4096, pages: 3 };
    expect(describeEvent(unknown)).toBe("hmm.range-fault va=0x1000 pages=3");
    expect(isFailure({ type: "dmabuf.move-notify", t: 0 })).toBe(false);
    expect(isFailure({ type: "odp.page-fault", t: 0 })).toBe(true);
    expect(describeEvent({ type: "api", t: 0, phase: "E", name: "dma_map_phys", device: "d", result: 4096 } as never)).toBe("◀ dma_map_phys d → 0x1000");
    expect(nextFailure([3, 9, 20], 4)).toBe(9);
    expect(nextFailure([3, 9, 20], 21)).toBe(-1);
  });

  test("virtualised rows and scrolling", () => {
    expect(visibleRows(2000, 400, 20, 100_000, 0)).toEqual({ from: 100, to: 120 });
    expect(visibleRows(0, 400, 20, 5, 8)).toEqual({ from: 0, to: 5 });
    expect(scrollToRow(2000, 400, 20, 50)).toBe(1000);
    expect(scrollToRow(2000, 400, 20, 130)).toBe(2220);
    expect(scrollToRow(2000, 400, 20, 110)).toBe(2000);
  });

  test("count series: cumulative, at most the asked points, busiest types first", () => {
    const ev = Array.from({ length: 1000 }, (_, i) => ({ type: i % 4 === 0 ? "b" : "a", t: i * 1000 }));
    const s = countSeries(ev, 6, 100);
    expect(s.types).toEqual(["a", "b"]);
    expect(s.t.length).toBe(100);
    expect(s.counts[0]!.at(-1)).toBe(750);
    expect(s.counts[1]!.at(-1)).toBe(250);
  });

  test("zoom stays inside the space and at least one granule wide", () => {
    expect(zoom({ lo: 0, hi: 2 ** 32 }, 1e-9, 2 ** 31, 2 ** 32)).toEqual({ lo: 2 ** 31, hi: 2 ** 31 + 4096 });
    expect(zoom({ lo: 0, hi: 2 ** 32 }, 4, 0, 2 ** 32)).toEqual({ lo: 0, hi: 2 ** 32 });
  });
});
