/**
 * The one seeded generator of dmasim: a xorshift32 stream (Marsaglia, "Xorshift RNGs", 2003). Workloads
 * draw their random choices from it and test data is made of it, so a seed reproduces a run exactly. No
 * Math.random and no wall clock. Not for cryptography.
 */
export class Xorshift32 {
  #x: number;

  /** Small consecutive seeds are spread apart (Knuth's multiplicative hash) so they start distinct streams. */
  constructor(seed = 1) {
    this.#x = Math.imul(seed | 0, 2654435761) >>> 0 || 1;
  }

  /** The next 32-bit unsigned value. */
  nextU32(): number {
    let x = this.#x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#x = x >>> 0;
    return this.#x;
  }

  /** An integer in [min, max] (both safe integers, min <= max). */
  int(min: number, max: number): number {
    return min + Math.floor((this.nextU32() / 4294967296) * (max - min + 1));
  }

  /** True with probability `p` (0..1). */
  chance(p: number): boolean {
    return this.nextU32() / 4294967296 < p;
  }
}

/**
 * Deterministic test and workload data: `len` bytes, the low byte of each value of a Xorshift32 stream
 * seeded by `seed`, so a buffer's content says where it came from and two seeds give different bytes.
 */
export function patternBytes(len: number, seed = 1): Uint8Array {
  const out = new Uint8Array(len);
  const rng = new Xorshift32(seed);
  for (let i = 0; i < len; i++) out[i] = rng.nextU32() & 0xff;
  return out;
}
