import { writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { soak, summary } from "./run.js";
import { SoakSystem, SoakViolation } from "./system.js";
import { DmaDirection, dmaMapPhys } from "@dmasim/dma";

// CI runs SOAK_SEQUENCES (default 1 000) sequences; `pnpm soak` runs 10 000 and prints the summary
// that this test writes to SOAK_REPORT.
const sequences = Number(process.env.SOAK_SEQUENCES ?? 1000);
const seed = Number(process.env.SOAK_SEED ?? 20261203);

describe("soak", () => {
  it(`${sequences} random sequences over the whole stack break no promise`, () => {
    const result = soak(sequences, seed);
    const report = process.env.SOAK_REPORT;
    if (report !== undefined) writeFileSync(report, JSON.stringify({ summary: summary(result), ...result }, null, 2));
    expect(result.failures).toEqual([]);
    expect(result.sequences).toBe(sequences);
    expect(result.commands).toBeGreaterThan(sequences);
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
    if (buf !== undefined) dmaMapPhys(sys.devs[0]!, buf.phys, 4096, DmaDirection.TO_DEVICE, 0);
    expect(() => {
      sys.checkTeardown();
    }).toThrow(SoakViolation);
  });
});
