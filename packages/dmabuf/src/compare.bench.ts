import { bench, describe } from "vitest";
import { MiB } from "@dmasim/memory";
import { dmaBufMappingComparison, dmaBufMappingComparisonTable } from "./compare.js";

// The README's sg_table vs physical-range list table: `npx vitest bench --run --project dmabuf
// src/compare.bench.ts` writes it to stdout (counts, not times: they do not depend on the machine), then
// times one run of the comparison.
process.stdout.write(`\n${dmaBufMappingComparisonTable(64 * MiB)}\n\n`);

describe("sg_table vs physical-range list (64 MiB, half in VRAM)", () => {
  bench(
    "all three paths, map + move one block + remap",
    () => {
      dmaBufMappingComparison(64 * MiB);
    },
    { iterations: 2, warmupIterations: 0, time: 0 },
  );
});
