import { bench, describe } from "vitest";
import { hmmDmaComparisonTable } from "./compare.js";

// The README's comparison table: `npx vitest bench --run --project hmm-odp packages/hmm-odp/src/compare.bench.ts`
// prints it (counters and modelled time are deterministic; only the bench line measures the host).
const SIZES = [4096, 64 * 1024, 2 * 1024 * 1024, 64 * 1024 * 1024, 1024 * 1024 * 1024];

describe("comparison", () => {
  bench("build the comparison table (4 KiB … 1 GiB)", () => {
    process.stdout.write(`${hmmDmaComparisonTable(SIZES)}\n`);
  }, { iterations: 1, time: 0, warmupIterations: 0, warmupTime: 0 });
});
