import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { IOVA_ANCHOR } from "./constants.js";
import { IovaRangeBlocks } from "./range-blocks.js";
import { IovaTree, NIL } from "./tree.js";

/** Every range of the reference tree, in address order. */
function treeRanges(t: IovaTree): [number, number][] {
  const out: [number, number][] = [];
  t.forEach((lo, hi) => out.push([lo, hi]));
  return out;
}

function blockRanges(b: IovaRangeBlocks): [number, number][] {
  const out: [number, number][] = [];
  b.forEach((lo, hi) => out.push([lo, hi]));
  return out;
}

type Op =
  | { kind: "insert"; at: number; len: number }
  | { kind: "remove"; pick: number }
  | { kind: "fit"; size: number; order: number; low: number; high: number }
  | { kind: "run"; at: number; n: number; down: boolean };

const SPACE = 4000;

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("insert" as const), at: fc.nat(SPACE), len: fc.integer({ min: 1, max: 8 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("remove" as const), pick: fc.nat() }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("fit" as const),
      size: fc.integer({ min: 1, max: 40 }),
      order: fc.integer({ min: 0, max: 6 }),
      low: fc.nat(SPACE),
      high: fc.nat(SPACE + 100),
    }),
  },
  // A run of one-page ranges placed one after the other (upwards or downwards, as top-down allocation
  // places them): what fills blocks and makes them split, spill into a neighbour and empty again.
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("run" as const), at: fc.nat(SPACE), n: fc.integer({ min: 1, max: 200 }), down: fc.boolean() }) },
);

describe("IovaRangeBlocks", () => {
  it("holds the same ranges and answers every highest-fit query as the augmented AVL tree does", () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 120 }), (ops) => {
        const ref = new IovaTree();
        const blocks = new IovaRangeBlocks();
        const free = (lo: number, hi: number): boolean => {
          const a = ref.ceilingByHi(lo);
          return a === NIL || (ref.lo[a] ?? 0) > hi;
        };
        const insert = (lo: number, hi: number): void => {
          if (!free(lo, hi)) return;
          ref.insert(lo, hi);
          blocks.insert(lo, hi);
        };
        for (const o of ops) {
          if (o.kind === "insert") insert(o.at, o.at + o.len - 1);
          else if (o.kind === "run") {
            for (let i = 0; i < o.n; i++) {
              const p = o.down ? o.at - i : o.at + i;
              if (p >= 0) insert(p, p);
            }
          } else if (o.kind === "remove") {
            const all = treeRanges(ref);
            if (all.length === 0) continue;
            const [lo, hi] = all[o.pick % all.length] ?? [0, 0];
            const succ = ref.next(ref.find(lo));
            ref.remove(ref.find(lo));
            expect(blocks.remove(lo)).toBe(true);
            expect([blocks.nextLo, blocks.nextHi]).toEqual([ref.lo[succ], ref.hi[succ]]);
            expect(blocks.find(lo)).toBe(-1);
            expect(blocks.find(hi)).toBe(-1);
          } else {
            expect(blocks.highestFit(o.size, o.order, o.low, o.high)).toBe(ref.highestFit(o.size, o.order, o.low, o.high));
          }
        }
        expect(blocks.check()).toBe("");
        expect(blocks.size).toBe(ref.size);
        expect(blockRanges(blocks)).toEqual(treeRanges(ref));
        // Lookups by any PFN agree too.
        for (let pfn = 0; pfn <= SPACE + 10; pfn += 7) {
          const x = ref.find(pfn);
          expect(blocks.find(pfn)).toBe(x === NIL ? -1 : ref.lo[x]);
          const c = ref.ceilingByHi(pfn);
          expect(blocks.ceilingByHi(pfn)).toBe(ref.lo[c]);
          expect(blocks.foundHi).toBe(ref.hi[c]);
        }
      }),
      { numRuns: 150 },
    );
  });

  it("fills blocks completely under top-down allocation and recycles emptied ones", () => {
    const b = new IovaRangeBlocks();
    for (let i = 0; i < 10_000; i++) b.insert(1_000_000 - i, 1_000_000 - i);
    expect(b.check()).toBe("");
    expect(b.highestFit(1, 0, 1, 1_000_000)).toBe(1_000_000 - 10_000);
    // Anchor block + 10 000 / 64 full blocks (one partly filled): 158 blocks, a 256-leaf index.
    expect(b.height).toBe(Math.log2(256) + 2);
    for (let i = 0; i < 10_000; i++) expect(b.remove(1_000_000 - i)).toBe(true);
    expect(b.size).toBe(0);
    expect(b.check()).toBe("");
    expect(b.remove(IOVA_ANCHOR)).toBe(false);
    expect(b.highestFit(3, 1, 1, 11)).toBe(8);
  });

  it("clear keeps the orders in use and returns to the anchor alone", () => {
    const b = new IovaRangeBlocks();
    for (let i = 0; i < 300; i++) b.insert(3 * i + 1, 3 * i + 1);
    expect(b.highestFit(2, 1, 1, 900)).toBe(896);
    b.clear();
    expect(b.size).toBe(0);
    expect(b.check()).toBe("");
    expect(b.highestFit(2, 1, 1, 900)).toBe(898);
  });
});
