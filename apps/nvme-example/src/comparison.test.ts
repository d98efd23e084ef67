import { describe, expect, it } from "vitest";
import { compareDrivers, formatComparison } from "./comparison.js";

describe("scatterlist-era driver vs the DMA iterator", () => {
  let t = 0;
  const rows = compareDrivers(() => (t += 1), { ops: 300, profiles: [{ name: "64K scattered", bs: 65536, layout: "scattered", readPct: 50 }] });
  const row = (style: string, mode: string) => rows.find((r) => r.style === style && r.mode === mode)!;

  it("the iterator allocates one IOVA and syncs once per request; no sg table", () => {
    for (const mode of ["strict", "lazy"]) {
      const it = row("iterator", mode);
      expect(it.iovaAllocs).toBe(1);
      expect(it.iotlbSyncMaps).toBe(1);
      expect(it.pteWrites).toBe(16);
      expect(it.bookkeepingBytes).toBe(88 + 16); // blk_dma_iter + dma_iova_state
    }
  });

  it("the scatterlist driver pays for the sg table on every request", () => {
    for (const style of ["sg-classic", "sg-two-step"]) {
      const sg = row(style, "strict");
      expect(sg.bookkeepingBytes).toBeGreaterThanOrEqual(16 * 32); // 16 struct scatterlist entries
      expect(sg.bookkeepingBytes).toBeGreaterThan(row("iterator", "strict").bookkeepingBytes);
      expect(sg.pteWrites).toBe(16);
    }
  });

  it("strict mode invalidates per request, lazy mode batches", () => {
    expect(row("iterator", "strict").iotlbInvalidations).toBe(1);
    expect(row("iterator", "lazy").iotlbInvalidations).toBeLessThan(0.1);
    expect(row("iterator", "lazy").modelledNs).toBeLessThan(row("iterator", "strict").modelledNs);
  });

  it("counts API calls: one dma_iova_link per phys vec against one dma_map_sg", () => {
    expect(row("iterator", "strict").iommuMapCalls).toBeGreaterThan(1);
    expect(row("sg-classic", "strict").iommuMapCalls).toBe(row("iterator", "strict").iommuMapCalls);
    expect(row("iterator", "strict").apiCalls).toBeCloseTo(row("iterator", "strict").iommuMapCalls + 3, 9); // + try_alloc, sync, destroy
    expect(row("sg-classic", "strict").apiCalls).toBe(2); // dma_map_sg + dma_unmap_sg
  });

  it("takes cost overrides: a 500 ns iotlb_sync_map (a virtual IOMMU's) adds 500 ns to every request", () => {
    const dear = compareDrivers(() => 0, { ops: 100, modes: ["strict"], costProfile: { IotlbSyncMap: 500 }, profiles: [{ name: "4K", bs: 4096, layout: "contiguous", readPct: 100 }] });
    const free = compareDrivers(() => 0, { ops: 100, modes: ["strict"], costProfile: { IotlbSyncMap: 0 }, profiles: [{ name: "4K", bs: 4096, layout: "contiguous", readPct: 100 }] });
    for (let i = 0; i < free.length; i++) expect(dear[i]!.modelledNs - free[i]!.modelledNs).toBeCloseTo(500, 6);
  });

  it("formats a table with one line per row", () => {
    const table = formatComparison(rows);
    expect(table.split("\n")).toHaveLength(2 + rows.length);
    expect(table).toContain("blk_rq_dma_map iterator");
    // Whole numbers keep their zeros (104 bytes, 16 PTE writes); fractions lose only trailing ones.
    const it = table.split("\n").find((l) => l.includes("iterator") && l.includes("| strict |"))!;
    expect(it).toMatch(/\| 1 \| 1[56](\.\d+)? \| 16 \| 1 \| 1 \| 104 \|/);
  });
});
