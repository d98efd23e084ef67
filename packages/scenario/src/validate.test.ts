import { readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseScenario } from "./parse.js";
import { BUILTIN_SCENARIOS } from "./builtins.js";
import { ScenarioError } from "./errors.js";
import { validateScenario } from "./validate.js";

const base = {
  name: "t",
  description: "a test",
  platform: { memory: { ramBytes: 1 << 30 }, iommu: {}, endpoints: [{ bdf: "0000:01:00.0" }] },
  workload: { kind: "single", device: "0000:01:00.0", buffers: 2, bytes: 4096 },
};

function errorOf(input: unknown): ScenarioError {
  try {
    validateScenario(input);
  } catch (e) {
    if (e instanceof ScenarioError) return e;
    throw e;
  }
  throw new Error("no error");
}

describe("scenario validation", () => {
  it("accepts every built-in after a JSON round trip, unchanged", () => {
    for (const s of BUILTIN_SCENARIOS) expect(validateScenario(JSON.parse(JSON.stringify(s)))).toEqual(s);
  });

  it("accepts the example file, which uses every top-level field", () => {
    const text = readFileSync(new URL("../examples/nvme-mixed.json", import.meta.url), "utf8");
    const s = parseScenario(text, "nvme-mixed.json");
    expect(Object.keys(s).sort()).toEqual(["api", "axes", "description", "expect", "kernel", "name", "platform", "seed", "workload"]);
  });

  it.each([
    [{ ...base, workload: { ...base.workload, kind: "fio" } }, "scenario.workload.kind", '"fio"', 'one of "nvme", "sg", "single", "p2p", "stale-window"'],
    [{ ...base, workload: { ...base.workload, buffers: 0 } }, "scenario.workload.buffers", "0", "a number of buffers from 1"],
    [{ ...base, workload: { ...base.workload, buffer: 2 } }, "scenario.workload.buffer", "2", "no such field"],
    [{ ...base, workload: { ...base.workload, offset: 100, bytes: 5000 } }, "scenario.workload.iova", '"shared"', '"per-buffer"'],
    [{ ...base, kernel: { iommuMode: "fast" } }, "scenario.kernel.iommuMode", '"fast"', '"strict", "lazy", "passthrough", "off"'],
    [{ ...base, kernel: { swiotlbBytes: 1000 } }, "scenario.kernel.swiotlbBytes", "1000", "a multiple of 262144"],
    [{ ...base, axes: { api: ["classic", "zero-copy"] } }, "scenario.axes.api[1]", '"zero-copy"', '"classic", "two-step"'],
    [{ ...base, name: "Has Spaces" }, "scenario.name", '"Has Spaces"', "lowercase letters"],
    [{ ...base, platform: { iommu: {} } }, "scenario.platform.memory", "(missing)", "an object"],
    [{ ...base, workload: { kind: "sg", device: "x", entries: 4, entryBytes: [4096, 512] } }, "scenario.workload.entryBytes", "[4096,512]", "a [min, max] pair"],
    [{ ...base, workload: { kind: "nvme", device: "x", ops: 10, bsMin: 6000 } }, "scenario.workload.bsMin", "6000", "a multiple of 4096"],
  ])("rejects %j naming the field, the value and what was expected", (input, field, value, expected) => {
    const e = errorOf(input);
    expect(e.field).toBe(field);
    expect(e.code).toBe("EINVAL");
    expect(e.message).toContain(`${field} = ${value} is invalid: expected`);
    expect(e.message).toContain(expected);
  });

  it("rejects text that is not JSON with the file's name", () => {
    expect(() => parseScenario("{ name: 1", "bad.json")).toThrow(/^bad\.json = .* is invalid: expected valid JSON/);
  });

  it("never throws anything but ScenarioError, whatever replaces a workload field", () => {
    const keys = ["kind", "device", "buffers", "bytes", "offset", "iova", "entries", "ops"];
    fc.assert(
      fc.property(fc.constantFrom(...keys), fc.jsonValue(), (key, value) => {
        try {
          validateScenario({ ...base, workload: { ...base.workload, [key]: value } });
        } catch (e) {
          expect(e).toBeInstanceOf(ScenarioError);
        }
      }),
      { numRuns: 300 },
    );
  });
});
