import { bench, describe } from "vitest";
import { odpComparisonTable } from "./compare.js";

// Prints the ODP comparison table of the README (counters are exact; times are the cost model's).
describe("ODP DMA strategies for a NIC workload", () => {
  let ran = false;
  bench("table", () => {
    if (ran) return;
    ran = true;
    process.stdout.write(`${odpComparisonTable([64 * 1024, 2 * 1024 * 1024, 64 * 1024 * 1024])}\n`);
  }, { iterations: 1, time: 0, warmupIterations: 0, warmupTime: 0 });
});
