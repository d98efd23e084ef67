import { describe, expect, it } from "vitest";
import { IoPageTable } from "./page-table.js";
import { LEVEL_SIZE, PTE_LEAF, PTE_VALID, pteAddr, pteFlags, ptePerm } from "./pte.js";
import { SZ_1G, SZ_2M, SZ_4K } from "./iova.js";
import { IommuProt } from "./prot.js";

const ALL = SZ_4K | SZ_2M | SZ_1G;

describe("pte encoding", () => {
  it("keeps physical addresses above 4 GiB and 2^32 intact in a float64", () => {
    const phys = 2 ** 45 + 7 * SZ_4K;
    const pte = phys + PTE_VALID + PTE_LEAF + IommuProt.WRITE * 4;
    expect(pteAddr(pte)).toBe(phys);
    expect(pteFlags(pte)).toBe(PTE_VALID + PTE_LEAF + 8);
    expect(ptePerm(pte)).toBe(IommuProt.WRITE);
  });
});

describe("IoPageTable", () => {
  it("picks leaves like iommu_pgsize: largest size allowed by both alignments and the length", () => {
    const pt = new IoPageTable(4, ALL);
    expect(pt.pickLevel(0, 0, SZ_1G)).toBe(3);
    expect(pt.pickLevel(0, SZ_2M, SZ_1G)).toBe(2);
    expect(pt.pickLevel(SZ_2M, SZ_2M, SZ_2M - SZ_4K)).toBe(1);
    expect(pt.pickLevel(0, SZ_4K, SZ_1G)).toBe(1);
    expect(new IoPageTable(4, SZ_4K).pickLevel(0, 0, SZ_1G)).toBe(1);
  });

  it("writes a 4 KiB leaf four levels down with the expected entry contents", () => {
    const pt = new IoPageTable(4, ALL);
    const iova = 0x12_3456_7000;
    pt.map(iova, 0xabc000, SZ_4K, IommuProt.READ, false);
    expect(pt.lastPtesWritten).toBe(1);
    expect(pt.lastTablesAllocated).toBe(3);
    expect(pt.tables).toBe(4);
    // root → L3 → L2 → L1, each a table entry; the leaf holds phys + valid + leaf + READ.
    let t = 0;
    for (let l = 4; l > 1; l--) {
      const e = pt.entry(t, Math.floor(iova / LEVEL_SIZE[l]!) % 512);
      expect(pteFlags(e)).toBe(PTE_VALID);
      t = pteAddr(e) / 4096;
    }
    const leaf = pt.entry(t, Math.floor(iova / SZ_4K) % 512);
    expect(leaf).toBe(0xabc000 + PTE_VALID + PTE_LEAF + 4);
  });

  it("detects overlap anywhere inside a range, including a whole covered subtree", () => {
    const pt = new IoPageTable(4, ALL);
    pt.map(5 * SZ_2M + 3 * SZ_4K, 0, SZ_4K, IommuProt.READ, false);
    expect(pt.hasMapping(0, SZ_1G)).toBe(true);
    expect(pt.hasMapping(5 * SZ_2M, 5 * SZ_2M + 3 * SZ_4K)).toBe(false);
    expect(pt.hasMapping(5 * SZ_2M + 3 * SZ_4K, 5 * SZ_2M + 4 * SZ_4K)).toBe(true);
    expect(pt.hasMapping(5 * SZ_2M + 4 * SZ_4K, 2 ** 48)).toBe(false);
  });

  it("unmap of a fully covered subtree clears one entry and detaches every table below", () => {
    const pt = new IoPageTable(4, SZ_4K);
    pt.map(0, 0, 4 * SZ_2M, IommuProt.READ, false); // 4 L1 tables under one L2
    expect(pt.tables).toBe(1 + 1 + 1 + 4);
    const freed: number[] = [];
    expect(pt.unmap(0, SZ_1G, freed)).toBe(4 * SZ_2M);
    // [0, 1G) covers L3 entry 0 whole: its L2 and four L1 tables go with one clear.
    // Changed with the kernel's freeing rule: this used to expect the now empty L3 table to be
    // detached too (6 tables, 2 clears). [0, 1G) does not cover the root entry's span, so L3 stays.
    expect(freed).toHaveLength(5);
    expect(pt.lastPtesCleared).toBe(1);
    expect(pt.pendingFree).toBe(5);
    expect(pt.tables).toBe(7);
    pt.release(freed);
    expect(pt.tables).toBe(2);
    expect(pt.walk(0)).toBe(0);
    expect(pt.lastWalkLevels).toBe(2); // root → L3, whose entry 0 is now empty
  });
});
