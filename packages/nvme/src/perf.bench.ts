import { bench, describe } from "vitest";
import { createNvmeSystem } from "./system.js";
import { prefillNamespace, runWorkload } from "./workload.js";

// 100,000 random 4 KiB reads at QD 32, every byte verified: the README's figure.
describe("nvme workload", () => {
  for (const debug of ["off", "throw"] as const) {
    const sys = createNvmeSystem({ queueDepth: 32, debug, iommuMode: "strict" });
    const gen = prefillNamespace(sys);
    let seed = 1;
    bench(`100k × 4 KiB random read, QD 32, strict, verify, debug ${debug}`, () => {
      runWorkload(sys, { ops: 100_000, queueDepth: 32, seed: seed++ }, gen);
    }, { iterations: 2, warmupIterations: 0, time: 0 });
  }
});
