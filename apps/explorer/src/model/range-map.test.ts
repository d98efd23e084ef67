import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { RangeMap } from "./range-map.js";

const PAGES = 64;

describe("RangeMap", () => {
  test("set merges equal-valued neighbours and keeps different ones apart", () => {
    const m = new RangeMap();
    m.set(0, 4096, 7);
    m.set(4096, 8192, 7);
    m.set(8192, 12288, 9);
    expect(m.ranges()).toEqual([
      { lo: 0, hi: 8192, val: 7 },
      { lo: 8192, hi: 12288, val: 9 },
    ]);
    m.delete(2048, 10240);
    expect(m.ranges()).toEqual([
      { lo: 0, hi: 2048, val: 7 },
      { lo: 10240, hi: 12288, val: 9 },
    ]);
    expect(m.get(1000)).toBe(7);
    expect(m.get(5000)).toBeUndefined();
    expect(m.bytes()).toBe(4096);
  });

  test("property: agrees with a page array under any sequence of set and delete", () => {
    const op = fc.record({ del: fc.boolean(), a: fc.nat(PAGES - 1), n: fc.integer({ min: 1, max: 16 }), v: fc.integer({ min: 0, max: 2 }) });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const m = new RangeMap();
        const ref: (number | undefined)[] = new Array<number | undefined>(PAGES + 16).fill(undefined);
        for (const o of ops) {
          if (o.del) m.delete(o.a, o.a + o.n);
          else m.set(o.a, o.a + o.n, o.v);
          for (let i = o.a; i < o.a + o.n; i++) ref[i] = o.del ? undefined : o.v;
        }
        for (let i = 0; i < ref.length; i++) expect(m.get(i)).toBe(ref[i]);
        // Ranges are sorted, disjoint, and no two touching ranges share a value (they would have merged).
        const rs = m.ranges();
        for (let i = 1; i < rs.length; i++) {
          expect(rs[i]!.lo).toBeGreaterThanOrEqual(rs[i - 1]!.hi);
          if (rs[i]!.lo === rs[i - 1]!.hi) expect(rs[i]!.val).not.toBe(rs[i - 1]!.val);
        }
        const copy = m.clone();
        copy.delete(0, PAGES + 16);
        expect(m.bytes()).toBe(ref.filter((v) => v !== undefined).length);
      }),
    );
  });
});
