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
    [{ ...base, workload: { ...base.workload, buffers: 0 } }, "scenario.workload.buffers", "0x0", "a number of buffers from 1"],
    [{ ...base, workload: { ...base.workload, buffer: 2 } }, "scenario.workload.buffer", "0x2", "no such field"],
    [{ ...base, workload: { ...base.workload, offset: 100, bytes: 5000 } }, "scenario.workload.iova", '"shared"', '"per-buffer"'],
    [{ ...base, kernel: { iommuMode: "fast" } }, "scenario.kernel.iommuMode", '"fast"', '"strict", "lazy", "passthrough", "off"'],
    [{ ...base, kernel: { swiotlbBytes: 1000 } }, "scenario.kernel.swiotlbBytes", "0x3e8", "a multiple of 262144"],
    [{ ...base, axes: { api: ["classic", "zero-copy"] } }, "scenario.axes.api[1]", '"zero-copy"', '"classic", "two-step"'],
    [{ ...base, name: "Has Spaces" }, "scenario.name", '"Has Spaces"', "lowercase letters"],
    [{ ...base, platform: { iommu: {} } }, "scenario.platform.memory", "(missing)", "an object"],
    [{ ...base, workload: { kind: "sg", device: "x", entries: 4, entryBytes: [4096, 512] } }, "scenario.workload.entryBytes", "[4096,512]", "a [min, max] pair"],
    [{ ...base, workload: { kind: "nvme", device: "x", ops: 10, bsMin: 6000 } }, "scenario.workload.bsMin", "0x1770", "a multiple of 4096"],
  ])("rejects %j naming the field, the value and what was expected", (input, field, value, expected) => {
    const e = errorOf(input);
    expect(e.issues.map((i) => i.path)).toContain(field);
    expect(e.code).toBe("EINVAL");
    expect(e.message).toContain(`${field} = ${value} is invalid: expected`);
    expect(e.message).toContain(expected);
  });

  it("rejects text that is not JSON with the file's name", () => {
    expect(() => parseScenario("{ name: 1", "bad.json")).toThrow(ScenarioError);
    expect(() => parseScenario("{ name: 1", "bad.json")).toThrow(/^bad\.json:1:3 = "name: 1" is invalid: expected valid JSON/);
    expect(() => parseScenario('{\n  "name": "x",\n  "seed": 1,,\n}', "f.json")).toThrow(/^f\.json:3:13 = /);
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

  it("reports every problem at once, each with its path from the root", () => {
    const e = errorOf({
      ...base,
      name: "Bad Name",
      seed: -1,
      kernel: { iommumode: "lazy", devices: { "0000:09:00.0": { coherent: "yes" } } },
      workload: { kind: "nvme", device: "0000:01:00.0", ops: 0, bsMin: 8192, bsMax: 4096, layuot: "scattered" },
    });
    expect(e.issues.map((i) => i.path)).toEqual([
      "scenario.name",
      'scenario.kernel.devices["0000:09:00.0"].coherent',
      "scenario.kernel.iommumode",
      "scenario.seed",
      "scenario.workload.ops",
      "scenario.workload.layuot",
    ]);
    expect(e.message.split("\n")).toHaveLength(7);
    expect(e.message).toMatch(/^6 problems:\n {2}scenario\.name = "Bad Name" is invalid: expected lowercase letters/);
  });

  it("checks relations once the fields are valid: BDFs on the platform, sizes against each other", () => {
    const e = errorOf({ ...base, kernel: { devices: { "0000:09:00.0": {} } }, workload: { kind: "nvme", device: "0000:07:00.0", ops: 1, bsMin: 8192, bsMax: 4096 } });
    expect(e.issues.map((i) => [i.path, i.expected.split(" (")[0]])).toEqual([
      ["scenario.workload.device", "an endpoint of the platform"],
      ['scenario.kernel.devices["0000:09:00.0"]', "an endpoint of the platform"],
      ["scenario.workload.bsMax", "at least bsMin"],
    ]);
  });

  it("a field the workload would ignore is an error, not silence", () => {
    expect(errorOf({ ...base, expect: { mapType: "BUS_ADDR" } }).field).toBe("scenario.expect.mapType");
  });

  it("the platform part is checked by pcie-p2p's validator, with the path under platform", () => {
    const e = errorOf({ ...base, platform: { memory: { ramBytes: 1 << 30 }, endpoints: [{ bdf: "0000:01:00.0", bars: [{ size: 1000 }] }] } });
    expect(e.field).toMatch(/^scenario\.platform\.endpoints\[0\]\.bars\[0\]\.size/);
    expect(e.value).toBe(1000);
  });

  it("refuses JSON nested too deep before parsing it, at its line and column", () => {
    const deep = `{"name": ${"[".repeat(100_000)}${"]".repeat(100_000)}}`;
    expect(() => parseScenario(deep, "deep.json")).toThrow(ScenarioError);
    expect(() => parseScenario(deep, "deep.json")).toThrow(/^deep\.json:1:73 = .* is invalid: expected JSON nested at most 64 levels deep/);
    // Brackets inside strings do not count.
    expect(() => parseScenario(JSON.stringify({ ...base, description: "[".repeat(200) }), "ok.json")).not.toThrow();
  });
});
