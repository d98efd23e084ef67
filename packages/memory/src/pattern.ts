import { Xorshift32 } from "@dmasim/trace";

/**
 * Deterministic test and workload data: `len` bytes from a xorshift32 stream seeded by `seed`, so a
 * buffer's content says where it came from and two seeds give different bytes. No Math.random: the
 * same call gives the same bytes on every run.
 */
export function patternBytes(len: number, seed = 1): Uint8Array {
  return new Xorshift32(seed).fill(new Uint8Array(len));
}
