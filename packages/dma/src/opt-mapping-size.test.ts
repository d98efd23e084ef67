import { describe, expect, it } from "vitest";
import { DMA_BIT_MASK } from "./constants.js";
import { dmaSetMaskAndCoherent, dmaSetMinAlignMask } from "./index.js";
import { dmaMaxMappingSize, dmaOptMappingSize, iovaRcacheRange } from "./opt-mapping-size.js";
import { makeKernel } from "./test-fixtures.js";

describe("dma_opt_mapping_size / dma_max_mapping_size", () => {
  it("behind iommu-dma: the IOVA range caches' limit, 128 KiB, whatever the mode's flush policy", () => {
    expect(iovaRcacheRange()).toBe(128 * 1024);
    for (const iommuMode of ["strict", "lazy"] as const) {
      const { dev } = makeKernel({ iommuMode });
      expect(dev.ops).toBe("iommu");
      expect(dmaOptMappingSize(dev)).toBe(128 * 1024);
      expect(dmaMaxMappingSize(dev)).toBe(Infinity);
    }
  });

  it("an untrusted device behind iommu-dma is also held to swiotlb's largest mapping", () => {
    const { untrusted } = makeKernel({ iommuMode: "strict" });
    expect(dmaMaxMappingSize(untrusted)).toBe(256 * 1024);
    dmaSetMinAlignMask(untrusted, 4095);
    // swiotlb_max_mapping_size: a 128-slot segment less the slots min_align_mask may skip.
    expect(dmaMaxMappingSize(untrusted)).toBe(256 * 1024 - 4096);
    expect(dmaOptMappingSize(untrusted)).toBe(128 * 1024);
  });

  it("on dma-direct: no preference unless swiotlb may bounce (forced, or a mask below the top of RAM)", () => {
    const pt = makeKernel({ iommuMode: "passthrough", ramBytes: 8 * 1024 ** 3 });
    dmaSetMaskAndCoherent(pt.dev, DMA_BIT_MASK(64));
    expect(pt.dev.ops).toBe("direct");
    expect(dmaOptMappingSize(pt.dev)).toBe(Infinity);
    dmaSetMaskAndCoherent(pt.dev, DMA_BIT_MASK(32));
    expect(dmaOptMappingSize(pt.dev)).toBe(256 * 1024); // 8 GiB of RAM from 0: the top is out of reach
    const forced = makeKernel({ iommuMode: "off", swiotlb: { force: true } });
    dmaSetMaskAndCoherent(forced.dev, DMA_BIT_MASK(64));
    expect(dmaMaxMappingSize(forced.dev)).toBe(256 * 1024);
    const fits = makeKernel({ iommuMode: "off" }); // 4 GiB: a 32-bit mask reaches all of it
    expect(dmaOptMappingSize(fits.dev)).toBe(Infinity);
    const none = makeKernel({ iommuMode: "off", swiotlb: false, ramBytes: 8 * 1024 ** 3 });
    expect(dmaOptMappingSize(none.dev)).toBe(Infinity);
  });
});
