import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Scenario } from "../types.js";
import { validateScenario } from "../validate.js";
import { runScenario } from "./index.js";

const DEV = "0000:01:00.0";
const platform = { memory: { ramBytes: 1024 ** 3 }, iommu: {}, endpoints: [{ bdf: DEV }] };

describe("runner invariants", () => {
  it("any sg list: classic and two-step both give the device the right bytes, the same segments and PTEs, and leak nothing", () => {
    fc.assert(
      fc.property(
        fc.record({
          entries: fc.integer({ min: 1, max: 40 }),
          lo: fc.integer({ min: 1, max: 3 * 4096 }),
          span: fc.integer({ min: 0, max: 4096 }),
          offset: fc.integer({ min: 0, max: 4095 }),
          layout: fc.constantFrom("contiguous" as const, "scattered" as const),
          iommu: fc.constantFrom("strict" as const, "lazy" as const, "off" as const),
          seed: fc.integer({ min: 0, max: 1000 }),
        }),
        (p) => {
          const s: Scenario = validateScenario({
            name: "prop",
            description: "random sg list",
            platform,
            seed: p.seed,
            workload: { kind: "sg", device: DEV, entries: p.entries, entryBytes: [p.lo, p.lo + p.span], offset: p.offset, layout: p.layout },
          });
          const classic = runScenario(s, { api: "classic", iommu: p.iommu });
          const twoStep = runScenario(s, { api: "two-step", iommu: p.iommu });
          expect(classic.checks.filter((c) => !c.ok)).toEqual([]);
          expect(twoStep.checks.filter((c) => !c.ok)).toEqual([]);
          expect(twoStep.metrics.dmaSegments).toBe(classic.metrics.dmaSegments);
          expect(twoStep.counters.PteWrites).toBe(classic.counters.PteWrites);
        },
      ),
      { numRuns: 25 },
    );
  });

  it("the same scenario and seed give the same counters and modelled time", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1 << 20 }), fc.constantFrom("classic" as const, "two-step" as const), (seed, api) => {
        const s = validateScenario({
          name: "det",
          description: "determinism",
          platform: { ...platform, endpoints: [{ bdf: DEV, bars: [{ size: 16384 }] }] },
          seed,
          workload: { kind: "nvme", device: DEV, ops: 40, bsMin: 4096, bsMax: 32768, readPct: 50, queueDepth: 4, layout: "scattered", namespaceBytes: 1024 * 1024 },
        });
        const a = runScenario(s, { api, iommu: "lazy" });
        const b = runScenario(s, { api, iommu: "lazy" });
        expect(a.ok).toBe(true);
        expect(b).toEqual(a);
      }),
      { numRuns: 8 },
    );
  });
});
