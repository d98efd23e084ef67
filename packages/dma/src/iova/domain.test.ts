import { Trace } from "@dmasim/trace";
import { Counter } from "../counters.js";
import { describe, expect, it } from "vitest";
import { IovaDomain } from "./domain.js";
import { IovaError } from "./errors.js";

const G = 4096;
const PFN_4G = 2 ** 32 / G;
const mk = (startPfn = 1): IovaDomain => new IovaDomain(new Trace(), { granule: G, startPfn });

describe("IovaDomain tree allocation (alloc_iova / free_iova)", () => {
  it("allocates top-down below the limit, ends inclusive", () => {
    const d = mk();
    expect(d.allocIova(1, 999, false)).toEqual({ pfnLo: 999, pfnHi: 999 });
    expect(d.allocIova(3, 999, false)).toEqual({ pfnLo: 996, pfnHi: 998 });
    expect(d.allocIova(2, 500, false)).toEqual({ pfnLo: 499, pfnHi: 500 });
    expect(d.liveRanges).toBe(3);
    expect(d.trace.counters.get(Counter.IovaAllocTree)).toBe(3);
  });

  it("size-aligned allocation aligns pfn_lo to the next power of two of the size", () => {
    const d = mk();
    const r = d.allocIova(3, 1000, true)!;
    expect(r.pfnLo % 4).toBe(0);
    expect(r).toEqual({ pfnLo: 996, pfnHi: 998 });
    const r2 = d.allocIova(5, 1000, true)!;
    expect(r2.pfnLo % 8).toBe(0);
    expect(r2.pfnHi).toBeLessThan(996);
  });

  it("never goes below start_pfn and fails with undefined when full", () => {
    const d = mk(10);
    expect(d.allocIova(5, 14, false)).toEqual({ pfnLo: 10, pfnHi: 14 });
    expect(d.allocIova(1, 14, false)).toBeUndefined();
    expect(d.trace.counters.get(Counter.IovaAllocFail)).toBe(1);
  });

  it("keeps upstream's next-fit walk: a hole above the cached node is only used on the retry pass", () => {
    const d = mk();
    expect(d.allocIova(1, 1023, true)!.pfnLo).toBe(1023);
    expect(d.allocIova(4, 1023, true)!.pfnLo).toBe(1016); // leaves 1020..1022 free
    // Highest fit would be 1022; upstream walks down from the cached node (1016) and takes 1015.
    expect(d.allocIova(1, 1023, true)!.pfnLo).toBe(1015);
    // Fill everything below the cached node; then the retry pass finds the hole.
    for (let i = 0; i < 1014; i++) d.allocIova(1, 1023, true);
    expect(d.allocIova(1, 1023, true)!.pfnLo).toBe(1022);
  });

  it("find_iova finds by any pfn inside; free_iova frees and makes the space reusable", () => {
    const d = mk();
    const r = d.allocIova(4, 99, false)!;
    expect(d.findIova(r.pfnLo + 2)).toEqual(r);
    expect(d.findIova(r.pfnLo - 1)).toBeUndefined();
    expect(d.freeIova(r.pfnHi)).toBe(true);
    expect(d.freeIova(r.pfnHi)).toBe(false);
    expect(d.liveRanges).toBe(0);
    expect(d.allocIova(4, 99, false)).toEqual(r);
    expect(d.checkTree()).toBe("");
  });

  it("reserve_iova covers only the free stretches and blocks allocation there", () => {
    const d = mk();
    d.allocIova(2, 51, false); // 50..51
    expect(d.reserveIova(40, 60)).toBe(2); // 40..49 and 52..60
    expect(d.reserveIova(45, 55)).toBe(0);
    expect(d.ranges()).toEqual([
      { pfnLo: 40, pfnHi: 49 },
      { pfnLo: 50, pfnHi: 51 },
      { pfnLo: 52, pfnHi: 60 },
    ]);
    expect(d.allocIova(30, 60, false)).toEqual({ pfnLo: 10, pfnHi: 39 });
  });

  it("max32_alloc_size fails fast below 4 GiB and is reset by a free below 4 GiB", () => {
    const d = mk();
    d.reserveIova(1, PFN_4G - 101); // only 100 pages left below 4 GiB
    expect(d.allocIova(200, PFN_4G - 1, false)).toBeUndefined();
    expect(d.max32AllocSize).toBe(200);
    // 150 >= 200? no: still searched, and fails, lowering the bar to 150.
    expect(d.allocIova(150, PFN_4G - 1, false)).toBeUndefined();
    expect(d.max32AllocSize).toBe(150);
    const before = d.ranges().length;
    // A size >= max32 fails without touching the tree, even though nothing changed.
    expect(d.allocIova(160, PFN_4G - 1, false)).toBeUndefined();
    expect(d.ranges().length).toBe(before);
    // Above 4 GiB the fast-fail does not apply.
    expect(d.allocIova(160, PFN_4G * 2, false)!.pfnHi).toBe(PFN_4G * 2);
    const small = d.allocIova(50, PFN_4G - 1, false)!;
    d.freeIova(small.pfnLo);
    expect(d.max32AllocSize).toBe(PFN_4G);
  });

  it("rejects bad input with IovaError and changes nothing", () => {
    const d = mk();
    d.allocIova(1, 100, false);
    const snap = d.ranges();
    for (const bad of [
      () => d.allocIova(0, 100, false),
      () => d.allocIova(1.5, 100, false),
      () => d.allocIova(1, -1, false),
      () => d.freeIova(-3),
      () => d.findIova(Number.NaN),
      () => d.reserveIova(10, 5),
      () => d.allocIovaFast(1, 100, true, 7),
      () => { d.freeIovaFast(0, 1, 0); },
    ]) {
      expect(bad).toThrow(IovaError);
    }
    expect(() => d.allocIova(0, 100, false)).toThrow(/size = 0x0 is invalid/);
    expect(() => d.reserveIova(10, 5)).toThrow(/pfnHi = 0x5/);
    expect(d.ranges()).toEqual(snap);
    expect(() => new IovaDomain(new Trace(), { granule: 3000, startPfn: 1 })).toThrow(/granule/);
    expect(() => new IovaDomain(new Trace(), { granule: 8192, startPfn: 1 })).toThrow(/granule/);
    expect(() => new IovaDomain(new Trace(), { granule: G, startPfn: 0 })).toThrow(/startPfn/);
    expect(() => new IovaDomain(new Trace(), { granule: G, startPfn: 1, cpus: 0 })).toThrow(/cpus/);
  });

  it("put_iova_domain drops everything", () => {
    const d = mk();
    for (let i = 0; i < 10; i++) d.freeIovaFast(d.allocIovaFast(1, 1000, true, 0), 1, 0);
    d.allocIova(7, 1000, false);
    d.putIovaDomain();
    expect(d.liveRanges).toBe(0);
    expect(d.cachedPfns(0)).toBe(0);
    expect(d.allocIova(1, 1000, false)!.pfnLo).toBe(1000);
  });
});
