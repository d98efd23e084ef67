import { describe, expect, it } from "vitest";
import { Xorshift32 } from "@dmasim/trace";
import { patternBytes } from "./pattern.js";

describe("patternBytes", () => {
  it("is deterministic: the same seed gives the same bytes", () => {
    expect(patternBytes(4096, 7)).toEqual(patternBytes(4096, 7));
  });

  it("different seeds (even consecutive ones) give different streams", () => {
    const a = patternBytes(64, 1);
    const b = patternBytes(64, 2);
    expect(a).not.toEqual(b);
    expect(a.subarray(0, 8)).not.toEqual(b.subarray(0, 8));
  });

  it("looks like data, not a constant fill", () => {
    const bytes = patternBytes(4096, 3);
    expect(new Set(bytes).size).toBeGreaterThan(200);
    expect(patternBytes(0, 3)).toHaveLength(0);
  });
});

describe("Xorshift32", () => {
  it("is the stream patternBytes is made of: the same seed gives the same values", () => {
    const a = new Xorshift32(42);
    const bytes = patternBytes(16, 42);
    for (let i = 0; i < 16; i++) expect(a.next() & 0xff).toBe(bytes[i]);
  });

  it("keeps the first values of seed 1 (a change would alter every recorded run)", () => {
    const r = new Xorshift32(1);
    expect([r.next(), r.next(), r.next()]).toEqual([r0(1), r1(1), r2(1)]);
  });

  it("int stays in [min, max] and reaches both ends; chance follows p", () => {
    const r = new Xorshift32(7);
    const xs = Array.from({ length: 2000 }, () => r.int(3, 9));
    expect(Math.min(...xs)).toBe(3);
    expect(Math.max(...xs)).toBe(9);
    expect(Array.from({ length: 100 }, () => r.chance(0)).some(Boolean)).toBe(false);
    expect(Array.from({ length: 100 }, () => r.chance(1)).every(Boolean)).toBe(true);
  });
});

/** The reference steps, written out: x ^= x << 13; x ^= x >>> 17; x ^= x << 5, from imul(seed, 2654435761). */
function ref(seed: number, n: number): number {
  let x = Math.imul(seed, 2654435761) >>> 0;
  let v = 0;
  for (let i = 0; i <= n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    v = x >>> 0;
  }
  return v;
}
const r0 = (s: number): number => ref(s, 0);
const r1 = (s: number): number => ref(s, 1);
const r2 = (s: number): number => ref(s, 2);
