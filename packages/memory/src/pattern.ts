import { Xorshift32 } from "@dmasim/trace";

/**
 * The one seeded generator of dmasim: a xorshift32 stream (Marsaglia, "Xorshift RNGs", 2003). Workloads
 * draw their random choices from it and test data is made of it, so a seed reproduces a run exactly. No
 * Math.random and no wall clock. Not for cryptography.
 */
export function patternBytes(len: number, seed = 1): Uint8Array {
  return new Xorshift32(seed).fill(new Uint8Array(len));
}
