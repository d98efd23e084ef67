/** Bytes in one verification block: data is checked per 4 KiB block of the namespace. */
export const VERIFY_BLOCK = 4096;

/**
 * The expected content of namespace block `block` after its `gen`-th write (gen 0: the initial fill):
 * a xorshift32 stream seeded from both, so every block and every generation differ.
 */
export function patternInto(out: Uint32Array, block: number, gen: number): void {
  let x = (Math.imul(block + 1, 0x9e3779b1) ^ Math.imul(gen + 1, 0x85ebca77)) >>> 0;
  if (x === 0) x = 0x6d2b79f5;
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x >>> 0;
  }
}

/** Whether `got` holds exactly patternInto(block, gen), generated on the fly (the verification hot loop). */
export function patternMatches(got: Uint32Array, block: number, gen: number): boolean {
  let x = (Math.imul(block + 1, 0x9e3779b1) ^ Math.imul(gen + 1, 0x85ebca77)) >>> 0;
  if (x === 0) x = 0x6d2b79f5;
  // An indexed loop: for-of over a typed array is 2.5× slower here on Node 20, and this runs per word read.
  // eslint-disable-next-line @typescript-eslint/prefer-for-of
  for (let i = 0; i < got.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    if (got[i] !== x >>> 0) return false;
  }
  return true;
}
