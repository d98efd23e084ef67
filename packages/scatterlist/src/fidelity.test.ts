import { describe, expect, it } from "vitest";
import { DMA_ATTR_REQUIRE_COHERENT, DmaDirection, Errno, dmaMapPhys, dmaMappingError, dmaUnmapPhys } from "@dmasim/dma";
import { PAGE_SIZE, physAddr } from "@dmasim/memory";
import { Counter } from "@dmasim/dma";
import { dmaMapSg, dmaMapSgtable, dmaUnmapSg, dmaUnmapSgtable } from "./index.js";
import { listOf, makeRig } from "./test-fixtures.js";

const pages = (n: number) => Array.from({ length: n }, () => ({ len: PAGE_SIZE }));

describe("__dma_map_sg_attrs: DMA_ATTR_REQUIRE_COHERENT", () => {
  for (const iommu of [true, false]) {
    const where = iommu ? "iommu-dma" : "dma-direct";
    it(`(${where}) a non-coherent device gets -EOPNOTSUPP from dma_map_sgtable and 0 from dma_map_sg, mapping nothing`, () => {
      const rig = makeRig({ iommu, device: { coherent: false } });
      const table = listOf(rig, pages(3));
      const before = rig.platform.trace.counters.snapshot();
      expect(dmaMapSgtable(rig.dev, table, DmaDirection.BIDIRECTIONAL, DMA_ATTR_REQUIRE_COHERENT)).toBe(-Errno.EOPNOTSUPP);
      expect(dmaMapSg(rig.dev, table, 3, DmaDirection.FROM_DEVICE, DMA_ATTR_REQUIRE_COHERENT)).toBe(0);
      const moved = rig.platform.trace.counters.snapshot().diff(before);
      expect([moved.get(Counter.PteWrites), moved.get(Counter.CacheLinesWrittenBack), moved.get(Counter.SwiotlbSlotsAllocated)]).toEqual([0, 0, 0]);
      expect(moved.get(Counter.DmaMappingErrors)).toBe(2);
      expect(table.mapped).toBe(false);
      expect(rig.kernel.debug.entries(rig.dev.bdf)).toHaveLength(0);
    });

    it(`(${where}) a coherent device maps the list`, () => {
      const rig = makeRig({ iommu });
      const table = listOf(rig, pages(2));
      expect(dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT)).toBe(0);
      expect(table.mapped).toBe(true);
      dmaUnmapSgtable(rig.dev, table, DmaDirection.TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT);
    });
  }
});

describe("dma-debug tracks a mapped list's cachelines (debug_dma_map_sg → add_dma_entry)", () => {
  for (const iommu of [true, false]) {
    it(`(${iommu ? "iommu-dma" : "dma-direct"}) a single mapping over an entry of a live list is reported; after the unmap it is not`, () => {
      const rig = makeRig({ iommu, kernel: { debug: "collect" } });
      const table = listOf(rig, [{ len: 512 }, { len: PAGE_SIZE }, { len: 256 }]);
      expect(dmaMapSg(rig.dev, table, 3, DmaDirection.FROM_DEVICE)).toBeGreaterThan(0);
      const inside = (table.phys[2] ?? 0) + 128; // inside the third entry, not the segment's first
      const a = dmaMapPhys(rig.dev, physAddr(inside), 64, DmaDirection.FROM_DEVICE);
      dmaMappingError(rig.dev, a);
      expect(rig.kernel.debugReports().map((r) => r.check)).toEqual(["cacheline-overlap"]);
      dmaUnmapPhys(rig.dev, a, 64, DmaDirection.FROM_DEVICE);
      dmaUnmapSg(rig.dev, table, 3, DmaDirection.FROM_DEVICE);
      expect(rig.kernel.debug.cachelineRuns).toBe(0);
      const b = dmaMapPhys(rig.dev, physAddr(inside), 64, DmaDirection.FROM_DEVICE);
      dmaMappingError(rig.dev, b);
      expect(rig.kernel.debugReports()).toHaveLength(1);
      dmaUnmapPhys(rig.dev, b, 64, DmaDirection.FROM_DEVICE);
    });
  }
});
