import { describe, expect, it } from "vitest";
import { compareOnce, counterTable } from "./compare.js";

describe("counter table (README)", () => {
  it("two-step/widen needs as many IOVA allocations and syncs as classic on aligned lists", () => {
    const classic = compareOnce(256, "4k", "classic");
    const twoStep = compareOnce(256, "4k", "two-step");
    expect(twoStep.segments).toBe(classic.segments);
    expect(twoStep.counters.IotlbSyncMap).toBe(classic.counters.IotlbSyncMap);
    expect(twoStep.counters.PteWrites).toBe(classic.counters.PteWrites);
    expect(twoStep.counters.DmaIovaTryAllocs).toBe(1);
  });

  it("prints the table (SG_TABLE=1 npx vitest run --project scatterlist counter-table)", () => {
    const table = counterTable(process.env.SG_TABLE === undefined ? [16] : [16, 256, 4096]);
    if (process.env.SG_TABLE !== undefined) process.stdout.write(`${table}\n`);
    expect(table.split("\n").length).toBeGreaterThan(2);
  });
});
