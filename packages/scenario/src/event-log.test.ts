import { describe, expect, it } from "vitest";
import { builtinScenario } from "./builtins.js";
import { ScenarioError } from "./errors.js";
import { readRunLog, RUN_LOG_FORMAT, RUN_LOG_VERSION, RunLogRecorder } from "./event-log.js";
import { runScenario } from "./run/index.js";

describe("run log", () => {
  const s = builtinScenario("lazy-stale-window");
  if (s === undefined) throw new Error("no built-in lazy-stale-window");

  it("records a run's events in order with its result, and survives a JSON round trip", () => {
    const rec = new RunLogRecorder(s);
    const r = runScenario(s, { api: "classic", iommu: "lazy", onHost: rec.attach });
    rec.detach();
    const log = readRunLog(JSON.parse(JSON.stringify(rec.toJSON([r]))));
    expect([log.format, log.version]).toEqual([RUN_LOG_FORMAT, RUN_LOG_VERSION]);
    expect(log.runs).toHaveLength(1);
    const run = log.runs[0]!;
    expect([run.api, run.iommu, run.result?.ok]).toEqual(["classic", "lazy", true]);
    const t = run.events.map((e) => e.t);
    expect(t).toEqual([...t].sort((a, b) => a - b));
    // The lazy unmap leaves the IOVA to the flush queue, whose timeout flush is in the log.
    expect(run.events.some((e) => e.type === "flush-queue.flush")).toBe(true);
    // Version 2: the IOVA's life, the device's stale IOTLB hit in the window, and each TLP's route.
    const alloc = run.events.find((e) => e.type === "iova.alloc");
    const queued = run.events.find((e) => e.type === "iova.free" && e.queued);
    const release = run.events.find((e) => e.type === "flush-queue.release");
    expect(alloc).toBeDefined();
    expect(queued).toMatchObject({ iova: alloc?.type === "iova.alloc" ? alloc.iova : -1 });
    expect(run.events.indexOf(queued!)).toBeLessThan(run.events.indexOf(release!));
    expect(run.events.some((e) => e.type === "iotlb.lookup" && e.result === "stale-hit")).toBe(true);
    const tlp = run.events.find((e) => e.type === "tlp");
    expect(tlp?.type === "tlp" ? tlp.hops.at(-1) : undefined).toBe("ram");
  });

  it("records the events of hmm-odp and dmabuf runs too", () => {
    const types = (name: string): Set<string> => {
      const sc = builtinScenario(name);
      if (sc === undefined) throw new Error(`no built-in ${name}`);
      const rec = new RunLogRecorder(sc);
      runScenario(sc, { api: "two-step", iommu: "strict", onHost: rec.attach });
      rec.detach();
      return new Set(rec.toJSON().runs[0]?.events.map((e) => e.type));
    };
    const hmm = types("hmm-race");
    expect(["hmm.range-fault", "mmu-notifier.invalidate", "hmm.dma-map-pfn"].filter((t) => !hmm.has(t))).toEqual([]);
    const dmabuf = types("dmabuf-migrate");
    expect(["dmabuf.map", "dmabuf.invalidate", "dmabuf.move", "dmabuf.unmap"].filter((t) => !dmabuf.has(t))).toEqual([]);
  });

  it("keeps at most maxEventsPerRun events and counts the rest", () => {
    const rec = new RunLogRecorder(s, { maxEventsPerRun: 3 });
    runScenario(s, { api: "classic", iommu: "lazy", onHost: rec.attach });
    const run = rec.toJSON().runs[0]!;
    expect(run.events).toHaveLength(3);
    expect(run.droppedEvents).toBeGreaterThan(0);
    expect(run.result).toBeUndefined();
  });

  it("refuses a log of another format or version instead of misreading it", () => {
    expect(() => readRunLog({ format: RUN_LOG_FORMAT, version: 1, scenario: {}, runs: [] })).toThrow(ScenarioError);
    expect(() => readRunLog({ format: RUN_LOG_FORMAT, version: RUN_LOG_VERSION + 1, scenario: {}, runs: [] })).toThrow(/log\.version/);
    expect(() => readRunLog({ format: "chrome-trace", version: 1, scenario: {}, runs: [] })).toThrow(/log\.format/);
    expect(() => readRunLog([])).toThrow(ScenarioError);
  });
});
