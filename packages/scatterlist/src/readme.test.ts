import { describe, expect, it } from "vitest";
import { createDmaKernel, DmaDirection } from "@dmasim/dma";
import { GiB, PAGE_SIZE } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import { dmaMapSgtable, dmaUnmapSgtable, forEachSgtableDmaSg, sgAllocTableFromPages, sgDmaAddress, sgFreeTable } from "./index.js";

// The README's example, kept working.
describe("README example", () => {
  it("maps a list of pages for a device behind an IOMMU and reads it back through the device", () => {
    const platform = createPlatform({ memory: { ramBytes: 4 * GiB }, iommu: {}, endpoints: [{ bdf: "0000:01:00.0" }] });
    const kernel = createDmaKernel(platform, { iommuMode: "strict" });
    const dev = kernel.device("0000:01:00.0");

    // Four pages: two physically adjacent, two elsewhere (not next to each other or to the first two).
    const alloc = platform.memory.allocator;
    const a = alloc.allocPages(2) / PAGE_SIZE;
    alloc.allocPages(1);
    const b = alloc.allocPages(3) / PAGE_SIZE;
    const sgt = sgAllocTableFromPages(platform.trace, [a, a + 1, b, b + 2], 4, 0, 4 * PAGE_SIZE);
    // sg_alloc_table_from_pages merged the adjacent pair: 3 CPU entries.
    expect(sgt.origNents).toBe(3);
    platform.memory.write(sgt.phys[0] ?? 0, new TextEncoder().encode("hello"));

    expect(dmaMapSgtable(dev, sgt, DmaDirection.TO_DEVICE)).toBe(0); // two-step by default
    const segments: string[] = [];
    forEachSgtableDmaSg(sgt, (_i, addr, len) => {
      segments.push(`${addr.toString(16)}+${len}`);
      return true;
    });
    // The IOMMU made the three entries one contiguous DMA segment of 16 KiB.
    expect(sgt.nents).toBe(1);
    expect(segments).toHaveLength(1);
    const ep = platform.endpoint("0000:01:00.0");
    expect(new TextDecoder().decode(ep.dmaRead(sgDmaAddress(sgt, 0), 5))).toBe("hello");

    const costs = kernel.costs();
    expect(costs.counters.DmaIovaTryAllocs).toBe(1);
    expect(costs.counters.DmaIovaLinks).toBe(3);
    expect(costs.counters.IotlbSyncMap).toBe(1);

    dmaUnmapSgtable(dev, sgt, DmaDirection.TO_DEVICE);
    sgFreeTable(sgt);
  });
});
