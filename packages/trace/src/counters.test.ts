import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Counter, Counters, counterNames, COUNTER_KINDS } from "./counters.js";

describe("Counters", () => {
  it("indexes are dense and every index has its name", () => {
    const values = Object.values(Counter).sort((a, b) => a - b);
    expect(values).toEqual(Array.from({ length: COUNTER_KINDS }, (_, i) => i));
    for (const [name, index] of Object.entries(Counter)) expect(counterNames[index]).toBe(name);
  });

  it("add accumulates and snapshot is a frozen copy", () => {
    const c = new Counters();
    c.add(Counter.PteWrites, 3);
    c.add(Counter.PteWrites);
    const before = c.snapshot();
    c.add(Counter.IotlbHits, 10);
    expect(before.get(Counter.PteWrites)).toBe(4);
    expect(before.get(Counter.IotlbHits)).toBe(0);
    expect(c.get(Counter.IotlbHits)).toBe(10);
    expect(c.snapshot().diff(before).nonZero()).toEqual({ IotlbHits: 10 });
  });

  it("nonZero lists names in counter order and toJSON matches it", () => {
    const c = new Counters();
    c.add(Counter.IotlbMisses, 2);
    c.add(Counter.MemReadBytes, 4096);
    const snap = c.snapshot();
    expect(Object.keys(snap.nonZero())).toEqual(["MemReadBytes", "IotlbMisses"]);
    expect(JSON.parse(JSON.stringify(snap))).toEqual({ MemReadBytes: 4096, IotlbMisses: 2 });
  });

  it("reset zeroes everything", () => {
    const c = new Counters();
    c.add(Counter.PageAllocs, 5);
    c.reset();
    expect(c.snapshot().nonZero()).toEqual({});
  });

  it("diff of snapshots is the sum of what was added between them (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: COUNTER_KINDS - 1 }), fc.nat(1000))), (adds) => {
        const c = new Counters();
        c.add(Counter.DmaMapCalls, 7);
        const a = c.snapshot();
        const expected = new Map<number, number>();
        for (const [k, n] of adds) {
          c.add(k as Counter, n);
          expected.set(k, (expected.get(k) ?? 0) + n);
        }
        const d = c.snapshot().diff(a);
        for (let k = 0; k < COUNTER_KINDS; k++) expect(d.get(k as Counter)).toBe(expected.get(k) ?? 0);
      }),
    );
  });
});

describe("Counters.deferIncrements", () => {
  it("adds a producer's deferred increments before every read, and stops when unregistered", () => {
    const c = new Counters();
    let pending = 0;
    const stop = c.deferIncrements(() => {
      c.values[Counter.PteWrites] = (c.values[Counter.PteWrites] ?? 0) + pending;
      pending = 0;
    });
    pending = 3;
    expect(c.values[Counter.PteWrites]).toBe(0); // the array itself lags
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
