// When unmap frees page-table pages: only where the range covers the whole span of the entry that
// points to them, as VT-d's dma_pte_clear_level (drivers/iommu/intel/iommu.c) and ARM's
// __arm_lpae_unmap (drivers/iommu/io-pgtable-arm.c) do. A table emptied entry by entry stays linked.
import { Counter } from "./counters.js";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { domainPageTable } from "./internal.js";
import type { IommuDomain } from "./domain.js";
import { SZ_1G, SZ_2M, SZ_4K, iova, unsafeIova } from "./iova.js";
import { IommuProt } from "./prot.js";
import { LEVEL_SIZE, PTE_LEAF, pteAddr } from "./pte.js";
import { setup } from "./test-fixtures.js";
import { physAddr, unsafePhysAddr } from "@dmasim/memory";

const RW = IommuProt.READ | IommuProt.WRITE;

describe("page-table pages freed by unmap", () => {
  it("a 4 KiB unmap frees no table, on the single-page and on the general path", () => {
    const { dom, trace } = setup();
    dom.map(iova(SZ_1G), physAddr(0), SZ_4K, RW); // alone in its leaf table, level-2 and level-3 tables
    dom.map(iova(2 * SZ_1G), physAddr(0), 2 * SZ_4K, RW);
    const pages = dom.ptPages;
    const single = dom.unmap(iova(SZ_1G), SZ_4K);
    const general = dom.unmap(iova(2 * SZ_1G), 2 * SZ_4K); // two pages: the general path
    expect([single.unmapped, single.freed.count, general.unmapped, general.freed.count]).toEqual([SZ_4K, 0, 2 * SZ_4K, 0]);
    expect(dom.ptPages).toBe(pages);
    expect(trace.counters.get(Counter.PteClears)).toBe(3);
    expect(trace.counters.get(Counter.PtPagesPendingFree)).toBe(0);
    // Both emptied chains are reused as they are.
    expect(dom.map(iova(SZ_1G + 9 * SZ_4K), physAddr(0), SZ_4K, RW).ptPagesAllocated).toBe(0);
    expect(dom.map(iova(2 * SZ_1G + 3 * SZ_4K), physAddr(0), 4 * SZ_4K, RW).ptPagesAllocated).toBe(0);
    expect(dom.ptPages).toBe(pages);
  });

  it("unmapping a whole 2 MiB-aligned 2 MiB range of 4 KiB leaves frees exactly its leaf table", () => {
    const { dom, trace } = setup();
    dom.map(iova(SZ_2M), physAddr(SZ_4K), SZ_2M, RW); // phys not 2 MiB-aligned: 512 leaves of 4 KiB in one table
    dom.map(iova(3 * SZ_2M), physAddr(0), SZ_4K, RW); // a neighbour under the same level-2 table
    expect(dom.ptPages).toBe(1 + 1 + 1 + 2);
    const before = trace.counters.snapshot();
    const r = dom.unmap(iova(SZ_2M), SZ_2M);
    expect(r.unmapped).toBe(SZ_2M);
    expect(r.freed.count).toBe(1);
    // One write: the level-2 entry; the 512 leaves go with their table.
    expect(trace.counters.snapshot().diff(before).nonZero()).toEqual({ IommuUnmapCalls: 1, PteClears: 1, PtPagesPendingFree: 1 });
    expect(dom.ptPagesPending).toBe(1);
    expect(dom.ptPages).toBe(5); // still held until released
    dom.releasePtPages(r.freed);
    expect(trace.counters.get(Counter.PtPagesFreed)).toBe(1);
    expect(dom.ptPages).toBe(4);
    expect(dom.iovaToPhys(iova(SZ_2M + 5 * SZ_4K))).toBeUndefined();
    expect(dom.iovaToPhys(iova(3 * SZ_2M))).toBe(0);
    // The level-2 table stayed: mapping the range again needs only a new leaf table (the freed one).
    expect(dom.map(iova(SZ_2M), physAddr(SZ_4K), SZ_4K, RW).ptPagesAllocated).toBe(1);
    expect(dom.iovaToPhys(iova(SZ_2M + SZ_4K))).toBeUndefined(); // it came back zeroed
  });

  it("unmapping a whole 1 GiB-aligned 1 GiB range frees the level-2 table and its 512 leaf tables", () => {
    const { dom, trace } = setup({ pgsizeBitmap: SZ_4K });
    dom.map(iova(SZ_1G), physAddr(0), SZ_1G, RW);
    expect(dom.ptPages).toBe(1 + 1 + 1 + 512);
    const r = dom.unmap(iova(SZ_1G), SZ_1G);
    expect(r.unmapped).toBe(SZ_1G);
    expect(r.freed.count).toBe(1 + 512);
    expect(trace.counters.get(Counter.PteClears)).toBe(1); // the level-3 entry only
    expect(trace.counters.get(Counter.PtPagesPendingFree)).toBe(513);
    dom.releasePtPages(r.freed);
    expect(trace.counters.get(Counter.PtPagesFreed)).toBe(513);
    expect(dom.ptPages).toBe(2); // the root and the level-3 table, now empty
    expect(dom.mappedBytes).toBe(0);
  });

  it("a table emptied page by page stays linked; every later map under it reuses it", () => {
    const { dom, trace } = setup();
    dom.map(iova(SZ_2M), physAddr(SZ_4K), 512 * SZ_4K, RW);
    const pages = dom.ptPages;
    for (let i = 0; i < 512; i++) expect(dom.unmap(iova(SZ_2M + i * SZ_4K), SZ_4K).freed.count).toBe(0);
    expect(dom.mappedBytes).toBe(0);
    expect(dom.ptPages).toBe(pages);
    expect(trace.counters.get(Counter.PteClears)).toBe(512);
    expect(trace.counters.get(Counter.PtPagesPendingFree)).toBe(0);
    const allocated = trace.counters.get(Counter.PtPagesAllocated);
    for (let i = 0; i < 512; i++) dom.map(iova(SZ_2M + i * SZ_4K), physAddr(i * SZ_4K), SZ_4K, RW);
    expect(trace.counters.get(Counter.PtPagesAllocated)).toBe(allocated);
    expect(dom.iovaToPhys(iova(SZ_2M + 511 * SZ_4K + 1))).toBe(511 * SZ_4K + 1);
  });

  it("a large leaf mapped over an emptied table replaces it and frees it at once (arm_lpae_init_pte)", () => {
    const { mmu, dom, dev, trace } = setup();
    dom.map(iova(SZ_2M), physAddr(SZ_4K), 2 * SZ_4K, RW);
    dom.unmap(iova(SZ_2M), 2 * SZ_4K); // leaves an empty leaf table under level-2 entry 1
    expect(dom.ptPages).toBe(4);
    const before = trace.counters.snapshot();
    expect(dom.map(iova(SZ_2M), physAddr(4 * SZ_2M), SZ_2M, RW)).toEqual({ mapped: SZ_2M, ptesWritten: 1, ptPagesAllocated: 0 });
    // Detached and freed in the same step: nothing is left pending.
    expect(trace.counters.snapshot().diff(before).nonZero()).toEqual({ IommuMapCalls: 1, PteWrites: 1, PtPagesPendingFree: 1, PtPagesFreed: 1 });
    expect(dom.ptPages).toBe(3);
    expect(dom.ptPagesPending).toBe(0);
    expect(mmu.translate(dev, iova(SZ_2M + 5 * SZ_4K + 8), 8, "read")).toBe(4 * SZ_2M + 5 * SZ_4K + 8);
    // A 1 GiB leaf over a level-2 table holding only empty tables frees the whole subtree.
    const { dom: dom2, trace: trace2 } = setup();
    dom2.map(iova(SZ_1G), physAddr(SZ_4K), SZ_4K, RW);
    dom2.map(iova(SZ_1G + 5 * SZ_2M), physAddr(SZ_4K), SZ_4K, RW);
    dom2.unmap(iova(SZ_1G), SZ_4K);
    dom2.unmap(iova(SZ_1G + 5 * SZ_2M), SZ_4K);
    expect(dom2.ptPages).toBe(1 + 1 + 1 + 2);
    dom2.map(iova(SZ_1G), physAddr(SZ_1G), SZ_1G, RW);
    expect(dom2.ptPages).toBe(2);
    expect(trace2.counters.get(Counter.PtPagesFreed)).toBe(3);
    expect(dom2.iovaToPhys(iova(SZ_1G + 5 * SZ_2M))).toBe(SZ_1G + 5 * SZ_2M);
  });

  it("an overlap check looks through empty tables and still finds a mapping beneath them", () => {
    const { dom } = setup();
    dom.map(iova(SZ_2M), physAddr(SZ_4K), SZ_4K, RW);
    dom.map(iova(SZ_2M + 7 * SZ_4K), physAddr(SZ_4K), SZ_4K, RW);
    dom.unmap(iova(SZ_2M), SZ_4K);
    expect(() => dom.map(unsafeIova(SZ_2M), unsafePhysAddr(SZ_2M), SZ_2M, RW)).toThrow(/EEXIST/);
    expect(() => dom.map(unsafeIova(0), unsafePhysAddr(0), SZ_1G, RW)).toThrow(/EEXIST/);
    dom.unmap(iova(SZ_2M + 7 * SZ_4K), SZ_4K);
    expect(dom.map(iova(0), physAddr(0), SZ_1G, RW).mapped).toBe(SZ_1G);
  });
});

describe("freeing rule, property", () => {
  /** Tables in the subtree of `t` (whose entries are of level `l`), `t` included. */
  function subtree(dom: IommuDomain, t: number, l: number): number {
    const pt = dom[domainPageTable];
    if (pt === undefined) return 0;
    let n = 1;
    if (l === 1) return n;
    for (let i = 0; i < 512; i++) {
      const e = pt.entry(t, i);
      if (e !== 0 && (e & PTE_LEAF) === 0) n += subtree(dom, pteAddr(e) / 4096, l - 1);
    }
    return n;
  }
  /** Tables the kernel's rule frees for [start, end): the subtrees of the outermost covered table entries. */
  function coveredTables(dom: IommuDomain, t: number, l: number, base: number, start: number, end: number): number {
    const pt = dom[domainPageTable];
    if (pt === undefined || l === 1) return 0;
    const esz = LEVEL_SIZE[l] ?? 0;
    let n = 0;
    for (let i = 0; i < 512; i++) {
      const b = base + i * esz;
      if (b >= end || b + esz <= start) continue;
      const e = pt.entry(t, i);
      if (e === 0 || (e & PTE_LEAF) !== 0) continue;
      const child = pteAddr(e) / 4096;
      n += start <= b && end >= b + esz ? subtree(dom, child, l - 1) : coveredTables(dom, child, l - 1, b, start, end);
    }
    return n;
  }

  it("unmap frees exactly the tables under entries whose whole span the range covers; the rest stay linked", () => {
    const WINDOW = 2 * 512; // 4 MiB of 4 KiB pages, straddling a 2 MiB boundary
    const opArb = fc.record({
      unmap: fc.boolean(),
      // Often 2 MiB-aligned, so whole leaf tables are covered and freed.
      first: fc.oneof(fc.integer({ min: 0, max: WINDOW - 1 }), fc.constantFrom(0, 512)),
      pages: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: WINDOW }), fc.constantFrom(512, WINDOW)),
    });
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 30 }), (ops) => {
        const { dom } = setup({ pgsizeBitmap: SZ_4K });
        const base = SZ_1G - SZ_2M; // the window straddles a 1 GiB boundary too
        for (const op of ops) {
          const n = Math.min(op.pages, WINDOW - op.first);
          const at = base + op.first * SZ_4K;
          if (!op.unmap) {
            try {
              dom.map(iova(at), physAddr(SZ_4K), n * SZ_4K, RW);
            } catch {
              // EEXIST: overlapping maps are refused and change nothing
            }
            continue;
          }
          const expected = coveredTables(dom, 0, 4, 0, at, at + n * SZ_4K);
          const held = dom.ptPages;
          const { freed } = dom.unmap(iova(at), n * SZ_4K);
          expect(freed.count).toBe(expected);
          if (n < 512) expect(freed.count).toBe(0);
          expect(dom.ptPages).toBe(held);
          dom.releasePtPages(freed);
          // Every table still held is linked into the tree: nothing leaks, nothing is pending.
          expect(dom.ptPages).toBe(subtree(dom, 0, 4));
          expect(dom.ptPagesPending).toBe(0);
        }
      }),
      { numRuns: 60 },
    );
  });
});
