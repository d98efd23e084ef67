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
    expect(() => readRunLog({ format: RUN_LOG_FORMAT, version: 2, scenario: {}, runs: [] })).toThrow(ScenarioError);
    expect(() => readRunLog({ format: "chrome-trace", version: 1, scenario: {}, runs: [] })).toThrow(/log\.format/);
    expect(() => readRunLog([])).toThrow(ScenarioError);
  });
});
