/**
 * Disjoint half-open ranges [lo, hi) of addresses, each with a number attached (for a translation: the
 * delta phys - iova; for a plain set: 0). Adjacent ranges with the same value merge. Sorted parallel
 * arrays with binary search: a step of the explorer touches a few ranges, and a checkpoint copies three
 * arrays.
 */
export class RangeMap {
  #lo: number[];
  #hi: number[];
  #val: number[];

  constructor(lo: number[] = [], hi: number[] = [], val: number[] = []) {
    this.#lo = lo;
    this.#hi = hi;
    this.#val = val;
  }

  /** Number of ranges. */
  get size(): number {
    return this.#lo.length;
  }

  /** A copy that shares nothing with this one. */
  clone(): RangeMap {
    return new RangeMap(this.#lo.slice(), this.#hi.slice(), this.#val.slice());
  }

  /** Index of the first range whose hi > x. */
  #firstEndingAfter(x: number): number {
    let a = 0;
    let b = this.#lo.length;
    while (a < b) {
      const m = (a + b) >>> 1;
      if ((this.#hi[m] ?? 0) > x) b = m;
      else a = m + 1;
    }
    return a;
  }

  /** The value of the range holding x, or undefined. */
  get(x: number): number | undefined {
    const i = this.#firstEndingAfter(x);
    return i < this.#lo.length && (this.#lo[i] ?? 0) <= x ? this.#val[i] : undefined;
  }

  /** Whether x lies in a range. */
  has(x: number): boolean {
    return this.get(x) !== undefined;
  }

  /** Whether any range overlaps [lo, hi). */
  overlaps(lo: number, hi: number): boolean {
    const i = this.#firstEndingAfter(lo);
    return i < this.#lo.length && (this.#lo[i] ?? 0) < hi;
  }

  /** Removes [lo, hi) from every range (splitting those that straddle its ends). */
  delete(lo: number, hi: number): void {
    if (hi <= lo) return;
    const i = this.#firstEndingAfter(lo);
    let j = i;
    while (j < this.#lo.length && (this.#lo[j] ?? 0) < hi) j++;
    if (i === j) return;
    const keepLo: number[] = [];
    const keepHi: number[] = [];
    const keepVal: number[] = [];
    const firstLo = this.#lo[i] ?? 0;
    const lastHi = this.#hi[j - 1] ?? 0;
    if (firstLo < lo) {
      keepLo.push(firstLo);
      keepHi.push(lo);
      keepVal.push(this.#val[i] ?? 0);
    }
    if (lastHi > hi) {
      keepLo.push(hi);
      keepHi.push(lastHi);
      keepVal.push(this.#val[j - 1] ?? 0);
    }
    this.#lo.splice(i, j - i, ...keepLo);
    this.#hi.splice(i, j - i, ...keepHi);
    this.#val.splice(i, j - i, ...keepVal);
  }

  /** Sets [lo, hi) to `val`, replacing what was there; merges with equal-valued neighbours that touch it. */
  set(lo: number, hi: number, val = 0): void {
    if (hi <= lo) return;
    this.delete(lo, hi);
    let i = this.#firstEndingAfter(lo);
    // A neighbour ending exactly at lo has hi == lo, so it sits at i - 1.
    let nlo = lo;
    let nhi = hi;
    let from = i;
    if (i > 0 && this.#hi[i - 1] === lo && this.#val[i - 1] === val) {
      from = i - 1;
      nlo = this.#lo[i - 1] ?? lo;
    }
    if (i < this.#lo.length && this.#lo[i] === hi && this.#val[i] === val) {
      nhi = this.#hi[i] ?? hi;
      i++;
    }
    this.#lo.splice(from, i - from, nlo);
    this.#hi.splice(from, i - from, nhi);
    this.#val.splice(from, i - from, val);
  }

  /** The ranges overlapping [lo, hi) (clipped to it), in order; all of them without arguments. */
  ranges(lo = 0, hi = Number.MAX_SAFE_INTEGER): { lo: number; hi: number; val: number }[] {
    const out: { lo: number; hi: number; val: number }[] = [];
    for (let i = this.#firstEndingAfter(lo); i < this.#lo.length && (this.#lo[i] ?? 0) < hi; i++) {
      out.push({ lo: Math.max(lo, this.#lo[i] ?? 0), hi: Math.min(hi, this.#hi[i] ?? 0), val: this.#val[i] ?? 0 });
    }
    return out;
  }

  /** Total bytes covered. */
  bytes(): number {
    let n = 0;
    for (let i = 0; i < this.#lo.length; i++) n += (this.#hi[i] ?? 0) - (this.#lo[i] ?? 0);
    return n;
  }
}
