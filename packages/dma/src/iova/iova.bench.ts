import { Trace } from "@dmasim/trace";
import { bench, describe } from "vitest";
import { IovaDomain } from "./domain.js";

const G = 4096;
const TOP = 2 ** 36 - 1; // a 48-bit space of 4 KiB pages

describe("range cache: alloc_iova_fast + free_iova_fast pairs (1 page, warm cache)", () => {
  const d = new IovaDomain(new Trace(), { granule: G, startPfn: 1 });
  d.freeIovaFast(d.allocIovaFast(1, TOP, true, 0), 1, 0);
  bench("1000 pairs", () => {
    for (let i = 0; i < 1000; i++) d.freeIovaFast(d.allocIovaFast(1, TOP, true, 0), 1, 0);
  });
});

/** n single-page ranges packed at the top of the space. */
function packed(n: number): IovaDomain {
  const d = new IovaDomain(new Trace(), { granule: G, startPfn: 1 });
  for (let i = 0; i < n; i++) d.allocIova(1, TOP, false);
  return d;
}

/**
 * n single-page ranges with a one-page hole below each: upstream's backward walk has to step over
 * every hole before it finds room for two pages.
 */
function fragmented(n: number): IovaDomain {
  const d = new IovaDomain(new Trace(), { granule: G, startPfn: 1 });
  for (let i = 0; i < n; i++) d.reserveIova(TOP - 2 * i, TOP - 2 * i);
  return d;
}

/**
 * n two-page ranges with a two-page hole below each, every hole starting on an odd PFN: each hole is
 * big enough for two pages but none can hold two pages aligned to 2, the case a bound on gap length
 * alone cannot prune (the per-order bounds do).
 */
function misaligned(n: number): IovaDomain {
  const d = new IovaDomain(new Trace(), { granule: G, startPfn: 1 });
  const base = TOP - 3;
  for (let i = 0; i < n; i++) d.reserveIova(base - 4 * i + 1, base - 4 * i + 2);
  return d;
}

for (const [label, build, size] of [
  ["packed tree, 1 page", packed, 1],
  ["fragmented tree (1-page holes), 2 pages", fragmented, 2],
  ["misaligned 2-page holes, 2 pages size-aligned", misaligned, 2],
] as const) {
  describe(`tree: alloc_iova + free_iova, ${label}`, () => {
    for (const n of [1_000, 10_000, 100_000, 1_000_000]) {
      const d = build(n);
      bench(`${n} live ranges`, () => {
        const r = d.allocIova(size, TOP, true);
        if (r !== undefined) d.freeIova(r.pfnLo);
      });
    }
  });
}

/**
 * For contrast: the search of upstream's __alloc_and_insert_iova_range when its cached node sits above
 * the fragmented region (after a range up there was freed), transcribed over sorted arrays. It visits
 * every hole; the tree above answers the same question in O(log n).
 */
describe("upstream backward walk over the fragmented region (search only, linear reference)", () => {
  for (const n of [1_000, 10_000, 100_000]) {
    const lo = new Float64Array(n);
    const hi = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      lo[n - 1 - i] = TOP - 2 * i;
      hi[n - 1 - i] = TOP - 2 * i;
    }
    bench(`${n} live ranges`, () => {
      let high = TOP + 1;
      for (let i = n - 1; i >= 0; i--) {
        high = Math.min(high, lo[i] ?? 0);
        const newPfn = Math.floor((high - 2) / 2) * 2;
        if (i === 0 || newPfn > (hi[i - 1] ?? 0)) break;
      }
    });
  }
});
