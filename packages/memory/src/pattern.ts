/**
 * Deterministic test and workload data: `len` bytes from a xorshift32 stream seeded by `seed`, so a
 * buffer's content says where it came from and two seeds give different bytes. No Math.random: the
 * same call gives the same bytes on every run.
 */
export function patternBytes(len: number, seed = 1): Uint8Array {
  const out = new Uint8Array(len);
  // Spread small consecutive seeds apart (Knuth's multiplicative hash) so they start distinct streams.
  let x = Math.imul(seed | 0, 2654435761) >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
