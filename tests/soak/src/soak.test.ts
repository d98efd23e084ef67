import { writeFileSync } from "node:fs";
import { DmaDirection, dmaMapPhys } from "@dmasim/dma";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { runSequence, sequenceArb, soak, summary } from "./run.js";
import { SoakSystem, SoakViolation } from "./system.js";
import { physAddr } from "@dmasim/memory";

// CI runs SOAK_SEQUENCES (default 1 000) sequences through fast-check, which shrinks a failing one to a
// short reproduction (seed and path in its message). `pnpm soak` sets SOAK_REPORT: then every sequence
// runs whatever the others did, and the counts go to that file for the summary line.
const sequences = Number(process.env.SOAK_SEQUENCES ?? 1000);
const seed = Number(process.env.SOAK_SEED ?? 20261203);
const report = process.env.SOAK_REPORT;

describe("soak", () => {
  it(`${sequences} random sequences over the whole stack break no promise`, () => {
    if (report !== undefined) {
      const result = soak(sequences, seed);
      writeFileSync(report, JSON.stringify({ summary: summary(result), ...result }, null, 2));
      expect(result.failures).toEqual([]);
      return;
    }
    let runs = 0;
    let commands = 0;
    fc.assert(
      fc.property(sequenceArb, (seq) => {
        runs++;
        commands += runSequence(seq);
      }),
      { numRuns: sequences, seed },
    );
    expect(runs).toBe(sequences);
    expect(commands).toBeGreaterThan(sequences);
  }, 600_000);

  it("a mapping the driver never unmaps is caught at teardown", () => {
    const sys = new SoakSystem({
      iommuMode: "strict",
      swiotlb: "default",
      swiotlbBytes: 256 * 1024,
      kmallocBounce: false,
      requiresSyncMap: false,
      smallIotlb: false,
      devices: [
        { coherent: true, minAlignMask: 0, dmaMaskBits: 32 },
        { coherent: true, minAlignMask: 0, dmaMaskBits: 32 },
      ],
      faults: { seed: 1, iova: { probability: 0 }, swiotlb: { probability: 0 }, pgtable: { probability: 0 } },
    });
    const buf = sys.allocBuffer(0, 4096, new Uint8Array(4096).fill(7));
    expect(buf).toBeDefined();
    if (buf !== undefined) dmaMapPhys(sys.devs[0]!, physAddr(buf.phys), 4096, DmaDirection.TO_DEVICE, 0);
    expect(() => {
      sys.checkTeardown();
    }).toThrow(SoakViolation);
  });
});
