import { Counter } from "@dmasim/dma";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createNvmeSystem } from "./system.js";
import { runWorkload } from "./workload.js";

describe("random jobs", () => {
  it("verify every byte, leave no DMA mapping of data behind and fault nothing, whatever the mix", () => {
    fc.assert(
      fc.property(
        fc.record({
          mode: fc.constantFrom("strict" as const, "lazy" as const, "off" as const),
          mapping: fc.constantFrom("iterator" as const, "sg-classic" as const, "sg-two-step" as const),
          layout: fc.constantFrom("contiguous" as const, "scattered" as const, "offset" as const),
          bsMin: fc.integer({ min: 1, max: 8 }),
          bsExtra: fc.integer({ min: 0, max: 8 }),
          readPct: fc.integer({ min: 0, max: 100 }),
          qd: fc.integer({ min: 1, max: 16 }),
          sglThreshold: fc.constantFrom(0, 8192, 32768),
          seed: fc.integer({ min: 1, max: 1 << 30 }),
        }),
        (p) => {
          const sys = createNvmeSystem({ iommuMode: p.mode, mapping: p.mapping, queueDepth: p.qd, sglThreshold: p.sglThreshold, namespaceBytes: 2 * 1024 * 1024 });
          const mapped = sys.driver.dev.domain?.mappedBytes ?? 0;
          const r = runWorkload(sys, { ops: 40, bsMin: p.bsMin * 4096, bsMax: (p.bsMin + p.bsExtra) * 4096, readPct: p.readPct, layout: p.layout, seed: p.seed });
          expect(r.mismatches).toBe(0);
          expect(r.ops).toBe(40);
          expect(sys.platform.trace.counters.get(Counter.IommuFaults)).toBe(0);
          sys.kernel.flushAll();
          // Only the queues and the descriptor pools (coherent, long-lived) remain mapped.
          const after = sys.driver.dev.domain?.mappedBytes ?? 0;
          expect(after - mapped).toBeLessThanOrEqual(8 * 4096);
          expect(sys.kernel.iovaTracker.liveCount(sys.driver.dev.bdf)).toBe(0);
          expect(sys.kernel.debugReports()).toEqual([]);
        },
      ),
      { numRuns: 40, seed: 2024 },
    );
  });
});
