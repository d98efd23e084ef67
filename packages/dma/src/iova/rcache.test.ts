import { Trace } from "@dmasim/trace";
import { Counter } from "../counters.js";
import { describe, expect, it } from "vitest";
import { IOVA_DEPOT_DELAY_NS, IOVA_MAG_SIZE } from "./constants.js";
import { IovaDomain, orderBase2 } from "./domain.js";

const mk = (cpus = 1): IovaDomain => new IovaDomain(new Trace(), { granule: 4096, startPfn: 1, cpus });
const LIMIT = 2 ** 20;

describe("range caches (alloc_iova_fast / free_iova_fast)", () => {
  it("order_base_2 rounds up", () => {
    expect([1, 2, 3, 4, 5, 31, 32, 33].map(orderBase2)).toEqual([0, 1, 2, 2, 3, 5, 5, 6]);
  });

  it("rounds sizes below 32 up to a power of two and size-aligns them", () => {
    const d = mk();
    const pfn = d.allocIovaFast(3, LIMIT, true, 0);
    expect(d.findIova(pfn)).toEqual({ pfnLo: pfn, pfnHi: pfn + 3 });
    expect(pfn % 4).toBe(0);
    const big = d.allocIovaFast(33, LIMIT, true, 0);
    expect(d.findIova(big)).toEqual({ pfnLo: big, pfnHi: big + 32 });
    expect(big % 64).toBe(0);
  });

  it("a freed range is handed out again from the cache, without touching the tree", () => {
    const d = mk();
    const c = d.trace.counters;
    const pfn = d.allocIovaFast(3, LIMIT, true, 0);
    d.freeIovaFast(pfn, 3, 0);
    expect(c.get(Counter.IovaFreeCache)).toBe(1);
    expect(d.liveRanges).toBe(1); // cached ranges stay allocated in the tree
    expect(d.allocIovaFast(4, LIMIT, true, 0)).toBe(pfn);
    expect(c.get(Counter.IovaAllocCache)).toBe(1);
    expect(c.get(Counter.IovaAllocTree)).toBe(1);
  });

  it("sizes of order 6 and up bypass the cache", () => {
    const d = mk();
    const pfn = d.allocIovaFast(64, LIMIT, true, 0);
    d.freeIovaFast(pfn, 64, 0);
    expect(d.liveRanges).toBe(0);
    expect(d.trace.counters.get(Counter.IovaFreeTree)).toBe(1);
  });

  it("a cached pfn above the limit is not used", () => {
    const d = mk();
    const pfn = d.allocIovaFast(1, LIMIT, true, 0);
    d.freeIovaFast(pfn, 1, 0);
    const low = d.allocIovaFast(1, 1000, true, 0);
    expect(low).toBe(1000);
    expect(d.cachedPfns(0)).toBe(1);
  });

  it("caches are per CPU", () => {
    const d = mk(2);
    const pfn = d.allocIovaFast(1, LIMIT, true, 0);
    d.freeIovaFast(pfn, 1, 0);
    expect(d.allocIovaFast(1, LIMIT, true, 1)).not.toBe(pfn);
    expect(d.allocIovaFast(1, LIMIT, true, 0)).toBe(pfn);
  });

  it("full loaded and previous magazines go to the depot; the depot refills an empty CPU cache", () => {
    const d = mk(2);
    const pfns: number[] = [];
    for (let i = 0; i < 2 * IOVA_MAG_SIZE + 1; i++) pfns.push(d.allocIovaFast(1, LIMIT, true, 0));
    for (const p of pfns) d.freeIovaFast(p, 1, 0);
    expect(d.depotSize(0)).toBe(1);
    expect(d.cachedPfns(0)).toBe(pfns.length);
    // CPU 1 has empty magazines: it takes the depot's magazine.
    expect(pfns).toContain(d.allocIovaFast(1, LIMIT, true, 1));
    expect(d.depotSize(0)).toBe(0);
  });

  it("the depot gives back one magazine per 100 ms while it holds more than one per CPU", () => {
    const d = mk(1);
    const pfns: number[] = [];
    const n = 5 * IOVA_MAG_SIZE;
    for (let i = 0; i < n; i++) pfns.push(d.allocIovaFast(1, LIMIT, true, 0));
    for (const p of pfns) d.freeIovaFast(p, 1, 0);
    expect(d.depotSize(0)).toBe(3);
    const clock = d.trace.clock;
    clock.advance(IOVA_DEPOT_DELAY_NS - 1);
    expect(d.depotSize(0)).toBe(3);
    clock.advance(1);
    expect(d.depotSize(0)).toBe(2);
    expect(d.liveRanges).toBe(n - IOVA_MAG_SIZE);
    clock.advance(IOVA_DEPOT_DELAY_NS);
    expect(d.depotSize(0)).toBe(1);
    clock.advance(10 * IOVA_DEPOT_DELAY_NS);
    expect(d.depotSize(0)).toBe(1); // not above the CPU count: kept
    expect(clock.pendingTimers()).toBe(0);
  });

  it("on tree failure with flush_rcache, every cached range returns to the tree and the tree is retried", () => {
    const d = mk(2);
    const c = d.trace.counters;
    // A space of 15 pages, [1, 15]: 12..15 and 10..11 are cached, 8 aligned pages no longer fit.
    const a = d.allocIovaFast(4, 15, true, 0);
    const b = d.allocIovaFast(2, 15, true, 1);
    expect([a, b]).toEqual([12, 10]);
    d.freeIovaFast(a, 4, 0);
    d.freeIovaFast(b, 2, 1);
    expect(d.allocIovaFast(8, 15, false, 0)).toBe(0);
    expect(c.get(Counter.IovaAllocFail)).toBe(1);
    expect(c.get(Counter.IovaCacheFlushes)).toBe(0);
    expect(d.allocIovaFast(7, 15, true, 0)).toBe(8);
    expect(c.get(Counter.IovaCacheFlushes)).toBe(1);
    expect(d.cachedPfns(1) + d.cachedPfns(2)).toBe(0);
  });
});
