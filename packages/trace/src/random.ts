/**
 * The one seeded generator of dmasim: Marsaglia's xorshift32. The model never calls Math.random; test
 * data, workloads and fault injection draw from one of these, so the same seed replays the same run.
 */
export class Xorshift32 {
  #x: number;

  constructor(seed = 1) {
    this.#x = Xorshift32.mix(seed);
  }

  /**
   * A non-zero starting state for `seed`: small consecutive seeds are spread apart (Knuth's
   * multiplicative hash) so they start distinct streams; 0 (a fixed point of xorshift) becomes 1.
   */
  static mix(seed: number): number {
    return Math.imul(seed | 0, 2654435761) >>> 0 || 1;
  }

  /** Starts the stream again from `seed`. */
  reseed(seed: number): void {
    this.#x = Xorshift32.mix(seed);
  }

  /** The next 32-bit value, as an unsigned integer. */
  next(): number {
    let x = this.#x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#x = x >>> 0;
    return this.#x;
  }

  /** get_random_u32_below(n): a value in [0, n) (n at most 2^32; the small bias of `%` is irrelevant here). */
  below(n: number): number {
    return this.next() % n;
  }

  /** `len` bytes of the stream, one low byte per step. */
  fill(out: Uint8Array): Uint8Array {
    for (let i = 0; i < out.length; i++) out[i] = this.next() & 0xff;
    return out;
  }

  /** An integer in [min, max] (safe integers, min <= max), uniform up to the generator's 2^32 steps. */
  int(min: number, max: number): number {
    return min + Math.floor((this.next() / 4294967296) * (max - min + 1));
  }

  /** True with probability `p` (0..1). */
  chance(p: number): boolean {
    return this.next() / 4294967296 < p;
  }
}
