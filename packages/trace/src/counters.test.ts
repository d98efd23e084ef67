import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { DmasimInputError, DmasimStateError } from "./errors.js";
import { combineCounters, COUNTER_CAPACITY, counterNamesOf, Counters, defineCounters } from "./counters.js";
import { counterValues } from "./internal.js";

// Two blocks as two packages would declare them, at their own bases.
const Low = defineCounters(0, ["MemReadBytes", "PageAllocs"]);
const High = defineCounters(8, ["PteWrites", "IotlbHits", "IotlbMisses"]);
const Counter = combineCounters(Low, High);

function counters(): Counters {
  const c = new Counters();
  c.declare(Low);
  c.declare(High);
  return c;
}

describe("defineCounters / combineCounters", () => {
  it("gives each name base + position, frozen, and names by index", () => {
    expect(High).toEqual({ PteWrites: 8, IotlbHits: 9, IotlbMisses: 10 });
    expect(Object.isFrozen(High)).toBe(true);
    expect(Object.isFrozen(Counter)).toBe(true);
    expect(Counter.MemReadBytes).toBe(0);
    expect(Counter.IotlbMisses).toBe(10);
    expect(counterNamesOf(Counter)[9]).toBe("IotlbHits");
    expect(counterNamesOf(Counter)[5]).toBeUndefined();
  });

  it("refuses blocks outside the array, repeated names and overlapping blocks", () => {
    expect(() => defineCounters(COUNTER_CAPACITY - 1, ["A", "B"])).toThrow(DmasimInputError);
    expect(() => defineCounters(-1, ["A"])).toThrow(DmasimInputError);
    expect(() => defineCounters(0, ["A", "A"])).toThrow(DmasimInputError);
    expect(() => combineCounters(Low, defineCounters(1, ["Other"]))).toThrow(DmasimStateError);
    expect(() => combineCounters(Low, defineCounters(4, ["PageAllocs"]))).toThrow(DmasimStateError);
    expect(combineCounters(Low, Low)).toEqual(Low);
  });

  it("Counters.declare is idempotent and refuses a block on another's slot", () => {
    const c = counters();
    c.declare(High);
    expect(c.names[8]).toBe("PteWrites");
    expect(() => { c.declare(defineCounters(9, ["Foreign"])); }).toThrow(DmasimStateError);
  });
});

describe("Counters", () => {
  it("add accumulates and snapshot is a frozen copy", () => {
    const c = counters();
    c.add(Counter.PteWrites, 3);
    c.add(Counter.PteWrites);
    const before = c.snapshot();
    c.add(Counter.IotlbHits, 10);
    expect(before.get(Counter.PteWrites)).toBe(4);
    expect(before.get(Counter.IotlbHits)).toBe(0);
    expect(c.get(Counter.IotlbHits)).toBe(10);
    expect(c.snapshot().diff(before).nonZero()).toEqual({ IotlbHits: 10 });
  });

  it("nonZero lists names in index order and toJSON matches it", () => {
    const c = counters();
    c.add(Counter.IotlbMisses, 2);
    c.add(Counter.MemReadBytes, 4096);
    const snap = c.snapshot();
    expect(Object.keys(snap.nonZero())).toEqual(["MemReadBytes", "IotlbMisses"]);
    expect(JSON.parse(JSON.stringify(snap))).toEqual({ MemReadBytes: 4096, IotlbMisses: 2 });
  });

  it("a slot no block declared still shows in nonZero, by index", () => {
    const c = new Counters();
    c.declare(Low);
    c.add(Counter.PteWrites, 2);
    expect(c.snapshot().nonZero()).toEqual({ counter8: 2 });
  });

  it("reset zeroes everything", () => {
    const c = counters();
    c.add(Counter.PageAllocs, 5);
    c.reset();
    expect(c.snapshot().nonZero()).toEqual({});
  });

  it("diff of snapshots is the sum of what was added between them (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: COUNTER_CAPACITY - 1 }), fc.nat(1000))), (adds) => {
        const c = counters();
        c.add(Counter.PageAllocs, 7);
        const a = c.snapshot();
        const expected = new Map<number, number>();
        for (const [k, n] of adds) {
          c.add(k, n);
          expected.set(k, (expected.get(k) ?? 0) + n);
        }
        const d = c.snapshot().diff(a);
        for (let k = 0; k < COUNTER_CAPACITY; k++) expect(d.get(k)).toBe(expected.get(k) ?? 0);
      }),
    );
  });
});

describe("the counters' array behind @dmasim/trace/internal", () => {
  it("is the array add writes and get reads, for good, and no public member exposes it", () => {
    const c = counters();
    const v = c[counterValues];
    expect(v).toBeInstanceOf(Float64Array);
    expect(v.length).toBe(COUNTER_CAPACITY);
    c.add(Counter.IotlbHits, 5);
    expect(v[Counter.IotlbHits]).toBe(5);
    v[Counter.IotlbHits] = (v[Counter.IotlbHits] ?? 0) + 2;
    expect(c.get(Counter.IotlbHits)).toBe(7);
    expect(c.snapshot().nonZero()).toEqual({ IotlbHits: 7 });
    c.reset();
    expect(c[counterValues]).toBe(v);
    expect(v[Counter.IotlbHits]).toBe(0);
    // Only the symbol reaches it: no string-keyed property of a Counters holds an array.
    expect(Object.keys(c)).toEqual([]);
    expect("values" in c).toBe(false);
  });
});

describe("Counters.deferIncrements", () => {
  it("adds a producer's deferred increments before every read, and stops when unregistered", () => {
    const c = counters();
    let pending = 0;
    const stop = c.deferIncrements(() => {
      const v = c[counterValues];
      v[Counter.PteWrites] = (v[Counter.PteWrites] ?? 0) + pending;
      pending = 0;
    });
    pending = 3;
    expect(c[counterValues][Counter.PteWrites]).toBe(0); // the array itself lags
    expect(c.get(Counter.PteWrites)).toBe(3);
    pending = 2;
    const before = c.snapshot();
    expect(before.get(Counter.PteWrites)).toBe(5);
    pending = 4;
    expect(c.snapshot().diff(before).nonZero()).toEqual({ PteWrites: 4 });
    pending = 7;
    c.reset(); // folded, then cleared: nothing pending survives a reset
    expect(c.get(Counter.PteWrites)).toBe(0);
    stop();
    pending = 9;
    expect(c.get(Counter.PteWrites)).toBe(0);
  });
});
