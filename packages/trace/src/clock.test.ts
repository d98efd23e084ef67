import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { VirtualClock } from "./clock.js";
import { TraceInputError } from "./errors.js";

describe("VirtualClock", () => {
  it("starts at zero and moves only when told", () => {
    const c = new VirtualClock();
    expect(c.now).toBe(0);
    c.advance(1500);
    c.advance(0);
    expect(c.now).toBe(1500);
  });

  it("fires timers at their deadline, in order, ties in the order set", () => {
    const c = new VirtualClock();
    const seen: string[] = [];
    c.setTimer(100, () => seen.push(`a@${c.now}`));
    c.setTimer(50, () => seen.push(`b@${c.now}`));
    c.setTimer(100, () => seen.push(`c@${c.now}`));
    c.advance(99);
    expect(seen).toEqual(["b@50"]);
    c.advance(1);
    expect(seen).toEqual(["b@50", "a@100", "c@100"]);
    expect(c.now).toBe(100);
  });

  it("a timer set from a timer fires in the same advance when due", () => {
    const c = new VirtualClock();
    const seen: number[] = [];
    c.setTimer(10, () => {
      seen.push(c.now);
      c.setTimer(10, () => seen.push(c.now));
    });
    c.advance(25);
    expect(seen).toEqual([10, 20]);
    expect(c.now).toBe(25);
  });

  it("cancel removes a pending timer and reports whether it was pending", () => {
    const c = new VirtualClock();
    let fired = false;
    const h = c.setTimer(10, () => (fired = true));
    expect(c.nextDeadline()).toBe(10);
    expect(c.cancel(h)).toBe(true);
    expect(c.cancel(h)).toBe(false);
    c.advance(20);
    expect(fired).toBe(false);
    expect(c.pendingTimers()).toBe(0);
  });

  it("rejects going backwards or non-finite steps with a typed error and keeps time", () => {
    const c = new VirtualClock();
    c.advance(10);
    expect(() => { c.advance(-1); }).toThrow(TraceInputError);
    expect(() => { c.advance(Number.NaN); }).toThrow(/ns = NaN is invalid/);
    expect(() => { c.advanceTo(5); }).toThrow(TraceInputError);
    expect(() => c.setTimer(-3, () => undefined)).toThrow(TraceInputError);
    expect(c.now).toBe(10);
  });

  it("timers fire in nondecreasing time whatever the schedule (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.nat(10_000), { maxLength: 50 }), fc.array(fc.nat(3000), { maxLength: 20 }), (delays, steps) => {
        const c = new VirtualClock();
        const fired: number[] = [];
        for (const d of delays) c.setTimer(d, () => fired.push(c.now));
        for (const s of steps) c.advance(s);
        c.advance(10_000);
        expect(fired).toEqual([...delays].sort((a, b) => a - b));
      }),
    );
  });
});
