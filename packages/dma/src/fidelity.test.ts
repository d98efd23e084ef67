import { describe, expect, it } from "vitest";
import { Counter } from "@dmasim/trace";
import { DMA_ATTR_REQUIRE_COHERENT, DMA_MAPPING_ERROR, DmaDirection, dmaMapPage, dmaMapPhys, dmaMappingError, dmaUnmapPhys } from "./index.js";
import { DEV, freshPages, moved, pattern, rig } from "./test-fixtures.js";

// Behaviour that follows a kernel function closely enough to be checked against it line by line.

const { BIDIRECTIONAL, FROM_DEVICE } = DmaDirection;

describe("dma_map_phys: DMA_ATTR_REQUIRE_COHERENT on a device that is not DMA-coherent", () => {
  for (const iommuMode of ["strict", "off"] as const) {
    it(`(${iommuMode}) returns DMA_MAPPING_ERROR before choosing a path: nothing mapped, synced or recorded`, () => {
      const { platform, kernel, dev } = rig({ kernel: { iommuMode, devices: { [DEV]: { coherent: false } } } });
      expect(dev.ops).toBe(iommuMode === "off" ? "direct" : "iommu");
      const phys = freshPages(platform, 1);
      kernel.cpuWrite(phys, pattern(256, 5)); // dirty lines a mapping would have to write back
      const m = moved(platform, () => dmaMapPhys(dev, phys, 4096, BIDIRECTIONAL, DMA_ATTR_REQUIRE_COHERENT));
      expect(m.result).toBe(DMA_MAPPING_ERROR);
      expect(dmaMappingError(dev, m.result)).toBe(-12);
      expect([m.get(Counter.CacheLinesWrittenBack), m.get(Counter.PteWrites), m.get(Counter.SwiotlbSlotsAllocated)]).toEqual([0, 0, 0]);
      expect(m.get(Counter.DmaMappingErrors)).toBe(1);
      expect(kernel.debug.entries(dev.bdf)).toHaveLength(0);
      expect(kernel.debugReports()).toHaveLength(0);
      // The page wrapper goes through the same check.
      expect(dmaMapPage(dev, phys / 4096, 0, 4096, FROM_DEVICE, DMA_ATTR_REQUIRE_COHERENT)).toBe(DMA_MAPPING_ERROR);
    });

    it(`(${iommuMode}) still maps for a coherent device`, () => {
      const { platform, dev, ep } = rig({ kernel: { iommuMode } });
      const phys = freshPages(platform, 1);
      platform.memory.write(phys, pattern(4096, 6));
      const addr = dmaMapPhys(dev, phys, 4096, BIDIRECTIONAL, DMA_ATTR_REQUIRE_COHERENT);
      expect(dmaMappingError(dev, addr)).toBe(0);
      expect(ep.dmaRead(addr, 4096)).toEqual(pattern(4096, 6));
      dmaUnmapPhys(dev, addr, 4096, BIDIRECTIONAL, DMA_ATTR_REQUIRE_COHERENT);
    });
  }
});
