/**
 * A small seeded PRNG (mulberry32): the workload's only source of randomness, so a seed reproduces a run
 * exactly. Not for cryptography.
 */
export class Prng {
  #s: number;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`seed = ${String(seed)} is invalid: expected an integer`);
    this.#s = seed >>> 0;
  }

  /** A 32-bit unsigned integer. */
  nextU32(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor((this.nextU32() / 4294967296) * (max - min + 1));
  }

  /** True with probability `p` (0..1). */
  chance(p: number): boolean {
    return this.nextU32() / 4294967296 < p;
  }
}
