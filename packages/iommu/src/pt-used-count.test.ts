// The per-table use counts against a reference set of mapped pages, with single-leaf hits (whose count
// changes wait in the walk cache) interleaved with every path that reads a count: hasMapping (a linked
// table with no valid entry is skipped), the general unmap (a detached leaf table reports its count in
// bytes) and release; and, in a test of its own (the property's table allows 4 KiB leaves only), the
// freeing of an emptied leaf table by a 2 MiB map.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { IoPageTable } from "./page-table.js";
import { PTE_LEAF, PTE_PROT_UNIT, PTE_VALID } from "./pte.js";
import { SZ_2M, SZ_4K } from "./iova.js";
import { IommuProt } from "./prot.js";

const PAGES = 4 * 512; // four leaf tables
const LAST_IOVA = 2 ** 48 - SZ_4K;
const leaf = (p: number): number => 2 ** 32 + p * SZ_4K + PTE_VALID + PTE_LEAF + IommuProt.READ * PTE_PROT_UNIT;

interface OneOp {
  kind: "mapOne" | "mapCached" | "unmapOne";
  page: number;
}
interface RangeOp {
  kind: "mapRange" | "unmapRange" | "query";
  page: number;
  pages: number;
}
type Op = OneOp | RangeOp;

const pageArb = fc.oneof(fc.integer({ min: 0, max: PAGES - 1 }), fc.integer({ min: 0, max: 3 }).map((t) => t * 512));
const pagesArb = fc.oneof(fc.integer({ min: 1, max: 8 }), fc.constant(512), fc.constant(1024));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constantFrom("mapOne" as const, "mapCached" as const, "unmapOne" as const), page: pageArb }),
  fc.record({ kind: fc.constantFrom("mapRange" as const, "unmapRange" as const, "query" as const), page: pageArb, pages: pagesArb }),
);

describe("IoPageTable use counts with single-leaf hits", () => {
  it("hasMapping, the bytes a general unmap reports and the tables left equal a reference, whatever the mix", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 80 }), (ops) => {
        const pt = new IoPageTable(4, SZ_4K);
        const mapped = new Set<number>();
        const anyIn = (p: number, n: number): boolean => {
          for (let i = p; i < p + n; i++) if (mapped.has(i)) return true;
          return false;
        };
        for (const op of ops) {
          const iova = op.page * SZ_4K;
          if ("pages" in op) {
            const n = Math.min(op.pages, PAGES - op.page);
            const end = iova + n * SZ_4K;
            expect(pt.hasMapping(iova, end)).toBe(anyIn(op.page, n));
            if (op.kind === "mapRange" && !anyIn(op.page, n)) {
              pt.map(iova, 2 ** 32 + iova, n * SZ_4K, IommuProt.READ, false);
              for (let i = op.page; i < op.page + n; i++) mapped.add(i);
            } else if (op.kind === "unmapRange") {
              let count = 0;
              for (let i = op.page; i < op.page + n; i++) if (mapped.delete(i)) count++;
              const freed: number[] = [];
              const bytes = pt.unmapInLeafTable(iova, end);
              expect(bytes >= 0 ? bytes : pt.unmap(iova, end, freed)).toBe(count * SZ_4K);
              pt.release(freed);
            }
          } else {
            if (op.kind === "mapOne" || op.kind === "mapCached") {
              let r = op.kind === "mapCached" ? pt.mapLeafCached(iova, 1, leaf(op.page)) : -2;
              if (r === -2) r = pt.mapLeaf(iova, 1, leaf(op.page), LAST_IOVA);
              expect(r >= 0).toBe(!mapped.has(op.page));
              mapped.add(op.page);
            } else {
              expect(pt.unmapLeaf(iova, 1, LAST_IOVA)).toBe(mapped.has(op.page) ? SZ_4K : 0);
              mapped.delete(op.page);
            }
          }
        }
        // Everything at once: whole leaf tables are detached and report their counts.
        const freed: number[] = [];
        expect(pt.unmap(0, PAGES * SZ_4K, freed)).toBe(mapped.size * SZ_4K);
        pt.release(freed);
        expect(pt.hasMapping(0, PAGES * SZ_4K)).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it("a 2 MiB map over a leaf table emptied by single-leaf hits frees it (the pending count is folded first)", () => {
    const pt = new IoPageTable(4, SZ_4K | SZ_2M);
    const tablesBefore = pt.tables;
    // The first map walks and links three tables; the rest are hits of the walk cache, whose count
    // changes wait in it, and so are the four unmaps that empty the table again.
    expect(pt.mapLeaf(0, 1, leaf(0), LAST_IOVA)).toBe(3);
    expect(pt.mapLeaf(SZ_4K, 1, leaf(1), LAST_IOVA)).toBe(0);
    expect(pt.mapLeafCached(2 * SZ_4K, 1, leaf(2))).toBe(0);
    for (let p = 0; p < 3; p++) expect(pt.unmapLeaf(p * SZ_4K, 1, LAST_IOVA)).toBe(SZ_4K);
    expect(pt.tables).toBe(tablesBefore + 3);
    // The leaf table is empty: the large leaf replaces it at once (arm_lpae_init_pte), freeing it.
    expect(pt.map(0, 2 ** 32, SZ_2M, IommuProt.READ, false)).toBe(SZ_2M);
    expect(pt.lastTablesFreed).toBe(1);
    expect(pt.tables).toBe(tablesBefore + 2);
    expect(pt.hasMapping(0, SZ_2M)).toBe(true);
    // The freed table's pending count must not reach the next leaf table (the freed one, reused).
    expect(pt.mapLeaf(SZ_2M, 1, leaf(512), LAST_IOVA)).toBe(1);
    expect(pt.mapLeaf(SZ_2M + SZ_4K, 1, leaf(513), LAST_IOVA)).toBe(0);
    const freed: number[] = [];
    expect(pt.unmap(SZ_2M, 2 * SZ_2M, freed)).toBe(2 * SZ_4K);
    pt.release(freed);
    expect(pt.hasMapping(SZ_2M, 2 * SZ_2M)).toBe(false);
  });
});
