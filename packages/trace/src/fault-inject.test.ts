import { describe, expect, it } from "vitest";
import { FaultInjection } from "./fault-inject.js";
import { TraceInputError } from "./errors.js";
import { Xorshift32 } from "./random.js";

function run(f: FaultInjection, name: string, calls: number, size = 4096): boolean[] {
  const a = f.attr(name);
  return Array.from({ length: calls }, () => a.shouldFail(size));
}

describe("fault injection (should_fail)", () => {
  it("an unconfigured site never fails and is not armed", () => {
    const f = new FaultInjection();
    expect(f.attr("fail_x").armed).toBe(false);
    expect(run(f, "fail_x", 50).some(Boolean)).toBe(false);
  });

  it("probability 100 with times 2 fails exactly the first two calls, then disarms", () => {
    const f = new FaultInjection();
    f.configure({ sites: { fail_x: { probability: 100, times: 2 } } });
    expect(run(f, "fail_x", 5)).toEqual([true, true, false, false, false]);
    expect(f.attr("fail_x").armed).toBe(false);
    expect(f.injected()).toEqual({ fail_x: 2 });
  });

  it("interval fails only every n-th call", () => {
    const f = new FaultInjection();
    f.attr("fail_x").configure({ probability: 100, interval: 3 });
    expect(run(f, "fail_x", 7)).toEqual([false, false, true, false, false, true, false]);
  });

  it("space lets that many bytes through before the first failure", () => {
    const f = new FaultInjection();
    f.attr("fail_x").configure({ probability: 100, space: 10_000 });
    // 10000 > 4096 → 5904 left; > 4096 → 1808 left; 1808 is not > 4096 → fail.
    expect(run(f, "fail_x", 4)).toEqual([false, false, true, true]);
  });

  it("the same seed replays the same failures, another seed gives others", () => {
    const pattern = (seed: number): boolean[] => {
      const f = new FaultInjection();
      f.configure({ seed, sites: { fail_x: { probability: 30 } } });
      return run(f, "fail_x", 200);
    };
    expect(pattern(7)).toEqual(pattern(7));
    expect(pattern(7)).not.toEqual(pattern(8));
    const hits = pattern(7).filter(Boolean).length;
    expect(hits).toBeGreaterThan(30);
    expect(hits).toBeLessThan(90);
  });

  it("disarm stops a site; disarmAll stops them all", () => {
    const f = new FaultInjection();
    f.configure({ sites: { a: { probability: 100 }, b: { probability: 100 } } });
    f.attr("a").disarm();
    expect(run(f, "a", 3)).toEqual([false, false, false]);
    expect(run(f, "b", 1)).toEqual([true]);
    f.disarmAll();
    expect(run(f, "b", 3)).toEqual([false, false, false]);
  });

  it("refuses bad attributes with a typed error naming them", () => {
    const f = new FaultInjection();
    expect(() => f.attr("fail_x").configure({ probability: 101 })).toThrow(TraceInputError);
    expect(() => f.attr("fail_x").configure({ probability: 2.5 })).toThrow(/whole percentage/);
    expect(() => f.attr("fail_x").configure({ interval: 0 })).toThrow(/fail_x\.interval/);
    expect(() => f.attr("fail_x").configure({ times: -2 })).toThrow(TraceInputError);
    expect(() => f.attr("fail_x").configure({ probabilty: 5 } as never)).toThrow(/fail_x\.probabilty/);
    expect(() => {
      f.seed(0.5);
    }).toThrow(TraceInputError);
    expect(f.attr("fail_x").armed).toBe(false);
  });
});

describe("Xorshift32", () => {
  it("never reaches 0 (a fixed point) even from seed 0, and stays a uint32", () => {
    const r = new Xorshift32();
    r.reseed(0); // 0 is mixed to a non-zero state
    const seen = Array.from({ length: 1000 }, () => r.next());
    expect(seen.includes(0)).toBe(false);
    expect(seen.every((v) => Number.isInteger(v) && v >= 0 && v < 2 ** 32)).toBe(true);
  });

  it("below(n) stays in [0, n)", () => {
    const r = new Xorshift32(3);
    for (let i = 0; i < 1000; i++) {
      const v = r.below(100);
      expect(v >= 0 && v < 100).toBe(true);
    }
  });
});
