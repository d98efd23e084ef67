/**
 * dma-debug's active-cacheline table (dma_active_cacheline in kernel/dma/debug.c) as an interval
 * structure. Upstream keys a radix tree by the number of a mapping's first cache line and counts repeats
 * in the tags; dmasim tracks every line a mapping covers, so it keeps disjoint, sorted runs of lines
 * instead of one entry per line: a 1.5 GiB mapping is one run, not 25 million keys, and every operation
 * costs O(log r + k) for r runs in the table and k runs the range touches — never a step per line.
 *
 * Each run [start, end) carries how many tracked mappings cover it and how many of those are not
 * cache-clean (cache-clean: DMA_ATTR_DEBUGGING_IGNORE_CACHELINES or DMA_ATTR_REQUIRE_COHERENT, the
 * `is_cache_clean` of active_cacheline_insert). Runs with no mapping are dropped and neighbours with
 * equal counts merged, so there are at most 2m - 1 runs for m tracked ranges.
 */

/** What a range of lines meets in the table. */
export const Overlap = { NONE: 0, CLEAN: 1, NOT_CLEAN: 2 } as const;
export type Overlap = (typeof Overlap)[keyof typeof Overlap];

export class ActiveCachelines {
  readonly #start: number[] = [];
  readonly #end: number[] = [];
  readonly #count: number[] = [];
  readonly #dirty: number[] = [];

  /** Number of runs held (for tests of the structure's size). */
  get runs(): number {
    return this.#start.length;
  }

  /**
   * What the lines [first, last] overlap: NONE, only cache-clean mappings (CLEAN), or at least one that
   * is not cache-clean (NOT_CLEAN).
   */
  overlap(first: number, last: number): Overlap {
    const start = this.#start;
    const n = start.length;
    let found: Overlap = Overlap.NONE;
    for (let i = this.#firstEndingAfter(first); i < n && (start[i] ?? 0) <= last; i++) {
      if ((this.#dirty[i] ?? 0) > 0) return Overlap.NOT_CLEAN;
      found = Overlap.CLEAN;
    }
    return found;
  }

  /** active_cacheline_insert for the lines [first, last]. */
  insert(first: number, last: number, clean: boolean): void {
    this.#update(first, last + 1, 1, clean ? 0 : 1);
  }

  /** active_cacheline_remove: undoes one insert of the same lines and cleanliness. */
  remove(first: number, last: number, clean: boolean): void {
    this.#update(first, last + 1, -1, clean ? 0 : -1);
  }

  /** Index of the first run whose end lies after `line` (runs are disjoint: ends ascend too). */
  #firstEndingAfter(line: number): number {
    const end = this.#end;
    let lo = 0;
    let hi = end.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((end[mid] ?? 0) > line) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  #splice(at: number, start: number, end: number, count: number, dirty: number): void {
    this.#start.splice(at, 0, start);
    this.#end.splice(at, 0, end);
    this.#count.splice(at, 0, count);
    this.#dirty.splice(at, 0, dirty);
  }

  #drop(at: number): void {
    this.#start.splice(at, 1);
    this.#end.splice(at, 1);
    this.#count.splice(at, 1);
    this.#dirty.splice(at, 1);
  }

  /** Adds dc / dd to every line of [from, to), splitting runs at the edges and filling gaps (dc > 0). */
  #update(from: number, to: number, dc: number, dd: number): void {
    const start = this.#start;
    const end = this.#end;
    const count = this.#count;
    const dirty = this.#dirty;
    const lo = this.#firstEndingAfter(from);
    let i = lo;
    let cur = from;
    while (cur < to) {
      const s = start[i];
      if (s !== undefined && s <= cur) {
        const e = end[i] ?? 0;
        const c = count[i] ?? 0;
        const d = dirty[i] ?? 0;
        if (s < cur) {
          // Split off the part before the range.
          end[i] = cur;
          i++;
          this.#splice(i, cur, e, c, d);
        }
        if (e > to) {
          // Split off the part after the range.
          end[i] = to;
          this.#splice(i + 1, to, e, c, d);
        }
        count[i] = c + dc;
        dirty[i] = d + dd;
        cur = end[i] ?? to;
        i++;
      } else {
        const gapEnd = s === undefined ? to : Math.min(s, to);
        // A removal finds no gaps in a range it inserted; a gap there is left alone.
        if (dc > 0) {
          this.#splice(i, cur, gapEnd, dc, dd);
          i++;
        }
        cur = gapEnd;
      }
    }
    this.#normalize(Math.max(lo - 1, 0), i);
  }

  /** Drops empty runs and merges touching runs with equal counts, over indices [from, to]. */
  #normalize(from: number, to: number): void {
    const start = this.#start;
    const end = this.#end;
    const count = this.#count;
    const dirty = this.#dirty;
    let j = from;
    let stop = Math.min(to, start.length - 1);
    while (j <= stop && j < start.length) {
      if ((count[j] ?? 0) <= 0) {
        this.#drop(j);
        stop--;
        continue;
      }
      const next = j + 1;
      if (next < start.length && end[j] === start[next] && count[j] === count[next] && dirty[j] === dirty[next]) {
        end[j] = end[next] ?? 0;
        this.#drop(next);
        stop--;
        continue;
      }
      j++;
    }
  }
}
