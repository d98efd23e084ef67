import { bench, describe } from "vitest";
import { compareRig, mapUnmap } from "./compare.js";
import type { ListShape } from "./compare.js";

// map + unmap of one list, debug off, strict mode, a trusted device behind one IOMMU. Lists of 4 KiB
// pages are scattered (no two entries physically adjacent), so every entry is its own link / iommu_map.

const SHAPE_NAMES: Record<ListShape, string> = { "4k": "4 KiB pages (scattered)", "4k-contig": "4 KiB pages (one contiguous buffer)", mixed: "mixed sizes" };

for (const shape of ["4k", "4k-contig", "mixed"] as const satisfies readonly ListShape[]) {
  for (const n of [16, 256, 4096]) {
    describe(`${n} × ${SHAPE_NAMES[shape]}: dma_map_sgtable + dma_unmap_sgtable`, () => {
      const classic = compareRig(n, shape);
      const widen = compareRig(n, shape);
      const split = compareRig(n, shape);
      bench("classic", () => {
        mapUnmap(classic, { impl: "classic" });
      });
      bench("two-step (widen)", () => {
        mapUnmap(widen, { impl: "two-step", interior: "widen" });
      });
      bench("two-step (split)", () => {
        mapUnmap(split, { impl: "two-step", interior: "split" });
      });
    });
  }
}

describe("256 × 4 KiB pages with dma-debug on (throw)", () => {
  const rig = compareRig(256, "4k", { debug: "throw" });
  bench("two-step (widen), debug on", () => {
    mapUnmap(rig, { impl: "two-step" });
  });
});
