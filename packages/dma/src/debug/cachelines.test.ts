import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { ActiveCachelines, Overlap } from "./cachelines.js";

/** The same table kept the obvious way: counts per line. */
class NaiveLines {
  readonly count = new Map<number, number>();
  readonly dirty = new Map<number, number>();
  add(first: number, last: number, clean: boolean, d: number): void {
    for (let l = first; l <= last; l++) {
      this.count.set(l, (this.count.get(l) ?? 0) + d);
      if (!clean) this.dirty.set(l, (this.dirty.get(l) ?? 0) + d);
    }
  }
  overlap(first: number, last: number): Overlap {
    let found: Overlap = Overlap.NONE;
    for (let l = first; l <= last; l++) {
      if ((this.dirty.get(l) ?? 0) > 0) return Overlap.NOT_CLEAN;
      if ((this.count.get(l) ?? 0) > 0) found = Overlap.CLEAN;
    }
    return found;
  }
}

const range = fc.tuple(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 12 }), fc.boolean());

describe("ActiveCachelines", () => {
  it("property: answers every overlap query as a per-line count table would, with at most 2m - 1 runs", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(range, fc.boolean(), fc.nat(), range), { maxLength: 60 }), (ops) => {
        const t = new ActiveCachelines();
        const naive = new NaiveLines();
        const live: [number, number, boolean][] = [];
        for (const [[first, len, clean], removeOne, pick, [qFirst, qLen]] of ops) {
          if (removeOne && live.length > 0) {
            const [f, l, c] = live.splice(pick % live.length, 1)[0]!;
            t.remove(f, l, c);
            naive.add(f, l, c, -1);
          } else {
            t.insert(first, first + len, clean);
            naive.add(first, first + len, clean, 1);
            live.push([first, first + len, clean]);
          }
          expect(t.overlap(qFirst, qFirst + qLen)).toBe(naive.overlap(qFirst, qFirst + qLen));
          expect(t.runs).toBeLessThanOrEqual(Math.max(0, 2 * live.length - 1));
        }
        for (const [f, l, c] of live) t.remove(f, l, c);
        expect(t.runs).toBe(0);
      }),
      { numRuns: 300 },
    );
  });

  it("holds a range of 2^40 lines as one run", () => {
    const t = new ActiveCachelines();
    t.insert(5, 2 ** 40, false);
    t.insert(2 ** 40 + 1, 2 ** 40 + 1, true);
    expect(t.runs).toBe(2);
    expect(t.overlap(2 ** 39, 2 ** 39)).toBe(Overlap.NOT_CLEAN);
    expect(t.overlap(2 ** 40 + 1, 2 ** 41)).toBe(Overlap.CLEAN);
    expect(t.overlap(0, 4)).toBe(Overlap.NONE);
    t.remove(5, 2 ** 40, false);
    expect(t.overlap(0, 2 ** 40)).toBe(Overlap.NONE);
  });
});
