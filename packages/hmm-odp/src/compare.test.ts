import { describe, expect, it } from "vitest";
import { compareHmmDmaStrategy } from "./compare.js";

describe("the pfn-list / hmm_dma_map / batched comparison", () => {
  it("counts what each strategy costs over 256 KiB", () => {
    const list = compareHmmDmaStrategy("pfn-list + dma_map_page", 256 * 1024);
    const hmm = compareHmmDmaStrategy("hmm_dma_map", 256 * 1024);
    const batched = compareHmmDmaStrategy("hmm_dma_map batched", 256 * 1024);
    expect(list.pages).toBe(64);
    // One IOVA per page against one for the range.
    expect(list.iovaAllocations).toBe(64);
    expect(hmm.iovaAllocations).toBe(1);
    expect(batched.iovaAllocations).toBe(1);
    expect(hmm.pteWrites).toBe(64);
    expect(batched.pteWrites).toBe(64);
    // A sync per page (upstream hmm_dma_map_pfn) against one per 64-page run.
    expect(hmm.iotlbSyncs).toBe(64);
    expect(batched.iotlbSyncs).toBe(1);
    expect(list.bookkeepingBytesPerPage).toBe(16);
    expect(hmm.bookkeepingBytesPerPage).toBeCloseTo(8.25, 5);
    expect(batched.faultInNs).toBeLessThan(hmm.faultInNs);
    expect(hmm.faultInNs).toBeLessThan(list.faultInNs);
  });
});
