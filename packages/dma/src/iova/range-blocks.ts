import { IOVA_ANCHOR } from "./constants.js";

/** Ranges per block: a block is searched and shifted linearly, so it stays a few cache lines long. */
const BLOCK = 64;
const BLOCK_SHIFT = 6;
/** Blocks per storage chunk: the pfn arrays grow by one chunk (64 blocks, 32 KiB per array), never by doubling. */
const CHUNK_BLOCKS = 64;
const CHUNK_SHIFT = 6;
/** Alignment orders a domain can be asked for: PFNs are below 2^53. */
const MAX_ORDERS = 64;

/**
 * The allocated ranges of one IOVA domain, in address order, in blocks of up to 64 ranges: two doubles
 * per range (`pfn_lo`, `pfn_hi`) and nothing else, 16 bytes where the augmented AVL tree of `tree.ts`
 * (the reference this structure is tested against) needs 44 and doubles its arrays as it grows.
 *
 * Upstream (drivers/iommu/iova.c) keeps the ranges in an rbtree and `__alloc_and_insert_iova_range`
 * walks it backwards from a cached node, one range at a time. The question that walk answers, "the
 * highest gap below a bound that holds `size` pages aligned to 2^k", is answered here in O(log n + B):
 * every block knows, for each alignment order in use, the largest aligned size that fits in one of
 * its gaps (the gap below a range runs from the previous range's `pfn_hi + 1`), and a max segment tree
 * over the blocks in address order finds the highest block below a position whose bound says yes. A
 * block wholly below the upper bound whose bound says yes certainly holds the answer, so only the
 * block where the search starts and the block where the lower bound cuts can be scanned in vain.
 *
 * A full block that takes a range at either end hands it to its neighbour when that has room, else
 * gets a new neighbour for it: top-down allocation (each range just below the last one) fills blocks
 * completely. A range inserted in the middle of a full block splits it in halves; a block that empties
 * is recycled. The pfn storage grows in fixed chunks.
 */
export class IovaRangeBlocks {
  /** pfn_lo and pfn_hi of block b's entry i at chunk[b >> CHUNK_SHIFT][((b & 63) << BLOCK_SHIFT) + i]. */
  readonly #loChunks: Float64Array[] = [];
  readonly #hiChunks: Float64Array[] = [];
  /** Entries per block id. */
  #count = new Int32Array(16);
  /**
   * Where a block's entries start in its 64 slots: they occupy [start, start + count), so a range goes
   * in at either end by moving the nearer part of the block. A block made for a range below its
   * neighbour's starts at the top (allocation is top-down, so the next range goes just below it).
   */
  #start = new Int32Array(16);
  /** Block ids made so far; ids of emptied blocks wait in #freeIds. */
  #ids = 0;
  readonly #freeIds: number[] = [];
  /** Block ids in address order. */
  #order = new Int32Array(16);
  #nb = 0;
  /** Leaves of the segment trees (a power of two, at least #nb). */
  #leaves = 1;
  /** Per order in use: the bound of each block id, and the segment tree over positions (1-based heap). */
  readonly #fitById: Float64Array[] = [];
  readonly #seg: Float64Array[] = [];
  /** 2^order of each order in use, and order → index into the lists above (-1: not in use). */
  readonly #alignList = new Float64Array(MAX_ORDERS);
  readonly #orderIndex = new Int32Array(MAX_ORDERS).fill(-1);
  #orders = 0;
  #size = 0;
  /** What a block id without storage reads (never: every id made has its chunk). */
  readonly #empty = new Float64Array(0);
  // Outputs start as the anchor, a double: PFNs above 2^30 are doubles, and a field that starts as a
  // small integer changes representation on the first one (see IoPageTable's constructor in iommu).
  /** Set by `find` and `ceilingByHi`: pfn_hi of the range found. */
  foundHi = IOVA_ANCHOR;
  /** Set by `remove`: the range after the one removed (rb_next; the anchor at worst). */
  nextLo = IOVA_ANCHOR;
  nextHi = IOVA_ANCHOR;

  constructor() {
    this.#ensureOrder(0);
    this.clear();
  }

  /** Ranges held, the anchor not counted. */
  get size(): number {
    return this.#size;
  }

  /** Levels a lookup descends: the block index's segment tree, then the block. */
  get height(): number {
    return Math.log2(this.#leaves) + 2;
  }

  /** Drops every range; only the anchor [IOVA_ANCHOR, IOVA_ANCHOR] is left. */
  clear(): void {
    this.#freeIds.length = 0;
    this.#ids = 0;
    for (let k = 0; k < this.#orders; k++) this.#seg[k]?.fill(-Infinity);
    this.#nb = 0;
    this.#size = 0;
    const b = this.#newId();
    this.#order[0] = b;
    this.#nb = 1;
    this.#start[b] = BLOCK - 1;
    const base = this.#base(b);
    this.#loOf(b)[base] = IOVA_ANCHOR;
    this.#hiOf(b)[base] = IOVA_ANCHOR;
    this.#count[b] = 1;
    this.#refresh(0);
  }

  /** pfn_lo of the range holding `pfn` (its pfn_hi in `foundHi`), or -1 (private_find_iova). */
  find(pfn: number): number {
    const pos = this.#blockAtOrBelow(pfn);
    if (pos < 0) return -1;
    const b = this.#order[pos] ?? 0;
    const lo = this.#loOf(b);
    const base = this.#base(b);
    const i = upperBound(lo, base, this.#count[b] ?? 0, pfn) - 1;
    if (i < 0) return -1;
    const hi = this.#hiOf(b)[base + i] ?? 0;
    if (hi < pfn) return -1;
    this.foundHi = hi;
    return lo[base + i] ?? 0;
  }

  /** pfn_lo of the first range ending at or above `pfn` (its pfn_hi in `foundHi`); the anchor at worst. */
  ceilingByHi(pfn: number): number {
    let pos = this.#blockAtOrBelow(pfn);
    if (pos < 0) pos = 0;
    const b = this.#order[pos] ?? 0;
    const base = this.#base(b);
    const n = this.#count[b] ?? 0;
    let i = upperBound(this.#loOf(b), base, n, pfn) - 1;
    if (i < 0 || (this.#hiOf(b)[base + i] ?? 0) < pfn) i++;
    if (i < n) {
      this.foundHi = this.#hiOf(b)[base + i] ?? 0;
      return this.#loOf(b)[base + i] ?? 0;
    }
    if (pos + 1 >= this.#nb) return -1;
    const c = this.#order[pos + 1] ?? 0;
    const cb = this.#base(c);
    this.foundHi = this.#hiOf(c)[cb] ?? 0;
    return this.#loOf(c)[cb] ?? 0;
  }

  /** Inserts [lo, hi]; the caller guarantees that it overlaps nothing. */
  insert(lo: number, hi: number): void {
    let pos = this.#blockAtOrBelow(lo);
    if (pos < 0) pos = 0;
    const b = this.#order[pos] ?? 0;
    const n = this.#count[b] ?? 0;
    const i = upperBound(this.#loOf(b), this.#base(b), n, lo);
    if (n < BLOCK) {
      this.#insertIn(pos, i, lo, hi);
    } else if (i === n) {
      // Past the end of a full block: the front of the next one, or a new block between them.
      const c = pos + 1 < this.#nb ? (this.#order[pos + 1] ?? 0) : -1;
      if (c < 0 || (this.#count[c] ?? 0) >= BLOCK) this.#addBlock(pos + 1, BLOCK);
      this.#insertIn(pos + 1, 0, lo, hi);
    } else if (i === 0) {
      // Below everything (only the first block has nothing before it to take the range).
      this.#addBlock(pos, BLOCK);
      this.#insertIn(pos, 0, lo, hi);
    } else {
      this.#split(pos);
      const half = BLOCK >> 1;
      if (i <= half) this.#insertIn(pos, i, lo, hi);
      else this.#insertIn(pos + 1, i - half, lo, hi);
    }
    this.#size++;
  }

  /**
   * Removes the range starting at `lo` (never the anchor); false when no range starts there. The range
   * after it is left in `nextLo`/`nextHi`; its gap now reaches down to the removed range's predecessor.
   */
  remove(lo: number): boolean {
    const pos = this.#blockAtOrBelow(lo);
    if (pos < 0) return false;
    const b = this.#order[pos] ?? 0;
    const L = this.#loOf(b);
    const H = this.#hiOf(b);
    const base = this.#base(b);
    const n = this.#count[b] ?? 0;
    const i = upperBound(L, base, n, lo) - 1;
    if (i < 0 || L[base + i] !== lo || lo === IOVA_ANCHOR) return false;
    if (i + 1 < n) {
      this.nextLo = L[base + i + 1] ?? 0;
      this.nextHi = H[base + i + 1] ?? 0;
    } else {
      const c = this.#order[pos + 1] ?? 0;
      const cb = this.#base(c);
      this.nextLo = this.#loOf(c)[cb] ?? 0;
      this.nextHi = this.#hiOf(c)[cb] ?? 0;
    }
    // Close the hole from the nearer end.
    if (i < n - 1 - i) {
      for (let j = base + i; j > base; j--) {
        L[j] = L[j - 1] ?? 0;
        H[j] = H[j - 1] ?? 0;
      }
      this.#start[b] = (this.#start[b] ?? 0) + 1;
    } else {
      for (let j = base + i; j < base + n - 1; j++) {
        L[j] = L[j + 1] ?? 0;
        H[j] = H[j + 1] ?? 0;
      }
    }
    this.#count[b] = n - 1;
    this.#size--;
    if (n === 1) {
      this.#removeBlock(pos);
      // The block now at pos had its first gap widened down to the removed block's predecessor.
      this.#widened(pos, 0);
    } else if (i === n - 1) this.#widened(pos + 1, 0);
    else this.#widened(pos, i);
    return true;
  }

  /**
   * The highest PFN p, a multiple of 2^order, with lowB <= p, p + size <= highB and [p, p + size)
   * free; -1 if none.
   */
  highestFit(size: number, order: number, lowB: number, highB: number): number {
    order |= 0;
    const k = this.#ensureOrder(order);
    const align = this.#alignList[k] ?? 1;
    // The search starts at the first range with pfn_lo >= highB: gaps above it lie wholly above highB.
    let pos = this.#blockAtOrBelow(highB - 1);
    let from: number;
    if (pos < 0) {
      pos = 0;
      from = 0;
    } else {
      const b = this.#order[pos] ?? 0;
      const n = this.#count[b] ?? 0;
      from = upperBound(this.#loOf(b), this.#base(b), n, highB - 1);
      if (from === n) {
        if (pos + 1 < this.#nb) {
          pos++;
          from = 0;
        } else from = n - 1;
      }
    }
    let r = this.#scan(pos, from, size, align, lowB, highB);
    if (r !== NOT_HERE) return r;
    // Every block below the one scanned lies wholly below highB, where its bound is exact: the segment
    // tree skips to the highest one that can hold the size.
    const seg = this.#seg[k] ?? this.#seg[0];
    if (seg === undefined) return -1;
    pos--;
    while (pos >= 0) {
      pos = prevAtLeast(seg, this.#leaves, pos, size);
      if (pos < 0) return -1;
      const b = this.#order[pos] ?? 0;
      r = this.#scan(pos, (this.#count[b] ?? 0) - 1, size, align, lowB, highB);
      if (r !== NOT_HERE) return r;
      pos--;
    }
    return -1;
  }

  /** Calls `fn(lo, hi)` for every range in address order, anchor excluded. */
  forEach(fn: (lo: number, hi: number) => void): void {
    for (let pos = 0; pos < this.#nb; pos++) {
      const b = this.#order[pos] ?? 0;
      const L = this.#loOf(b);
      const H = this.#hiOf(b);
      const base = this.#base(b);
      const n = this.#count[b] ?? 0;
      for (let i = 0; i < n; i++) {
        const lo = L[base + i] ?? 0;
        if (lo !== IOVA_ANCHOR) fn(lo, H[base + i] ?? 0);
      }
    }
  }

  /** Checks every structural invariant; for tests. Returns a description of the first breach or "". */
  check(): string {
    let prevHi = -1;
    let total = 0;
    for (let pos = 0; pos < this.#nb; pos++) {
      const b = this.#order[pos] ?? 0;
      const n = this.#count[b] ?? 0;
      if (n < 1 || n > BLOCK) return `block ${b} at ${pos} holds ${n} ranges`;
      const st = this.#start[b] ?? 0;
      if (st < 0 || st + n > BLOCK) return `block ${b} at ${pos} starts at slot ${st} with ${n} ranges`;
      const L = this.#loOf(b);
      const H = this.#hiOf(b);
      const base = this.#base(b);
      for (let i = 0; i < n; i++) {
        const lo = L[base + i] ?? 0;
        const hi = H[base + i] ?? 0;
        if (lo <= prevHi || hi < lo) return `range [${lo}, ${hi}] overlaps or is out of order`;
        prevHi = hi;
      }
      total += n;
      for (let k = 0; k < this.#orders; k++) {
        const want = this.#blockFit(pos, this.#alignList[k] ?? 1);
        if (this.#fitById[k]?.[b] !== want) return `block ${b} order-list ${k} bound ${this.#fitById[k]?.[b]} != ${want}`;
        const seg = this.#seg[k];
        if (seg?.[this.#leaves + pos] !== want) return `segment leaf ${pos} of order-list ${k} is stale`;
      }
    }
    if (prevHi !== IOVA_ANCHOR) return "the anchor is not the last range";
    if (total !== this.#size + 1) return `${total} ranges held, ${this.#size} + anchor counted`;
    for (let k = 0; k < this.#orders; k++) {
      const seg = this.#seg[k];
      if (seg === undefined) continue;
      for (let j = 1; j < this.#leaves; j++) {
        const want = Math.max(seg[2 * j] ?? -Infinity, seg[2 * j + 1] ?? -Infinity);
        if (seg[j] !== want) return `segment node ${j} of order-list ${k} is stale`;
      }
    }
    return "";
  }

  /**
   * Scans block `pos` downwards from entry `from`: the highest fit in the gaps there, STOP (-1) when a
   * gap reaches down to lowB without one (nothing lower can fit either), NOT_HERE to go on below.
   */
  #scan(pos: number, from: number, size: number, align: number, lowB: number, highB: number): number {
    const b = this.#order[pos] ?? 0;
    const L = this.#loOf(b);
    const H = this.#hiOf(b);
    const base = this.#base(b);
    const below = this.#lastHiBefore(pos) + 1;
    for (let i = from; i >= 0; i--) {
      const lo = L[base + i] ?? 0;
      const gs = i > 0 ? (H[base + i - 1] ?? 0) + 1 : below;
      if (gs < highB && lo > lowB) {
        const top = lo < highB ? lo : highB;
        if (top >= size) {
          const p = Math.floor((top - size) / align) * align;
          if (p >= gs && p >= lowB) return p;
        }
      }
      if (gs <= lowB) return -1;
    }
    return NOT_HERE;
  }

  /** pfn_hi of the last range before block `pos` (-1 for the first block). */
  #lastHiBefore(pos: number): number {
    if (pos <= 0) return -1;
    const p = this.#order[pos - 1] ?? 0;
    return this.#hiOf(p)[this.#base(p) + (this.#count[p] ?? 1) - 1] ?? 0;
  }

  /** The bound of block `pos` for one alignment: max over its gaps of (pfn_lo - gap start aligned up). */
  #blockFit(pos: number, align: number): number {
    const b = this.#order[pos] ?? 0;
    const L = this.#loOf(b);
    const H = this.#hiOf(b);
    const base = this.#base(b);
    const n = this.#count[b] ?? 0;
    let gs = this.#lastHiBefore(pos) + 1;
    let m = -Infinity;
    for (let i = 0; i < n; i++) {
      const f = (L[base + i] ?? 0) - Math.ceil(gs / align) * align;
      if (f > m) m = f;
      gs = (H[base + i] ?? 0) + 1;
    }
    return m;
  }

  /** Recomputes the bounds of block `pos` and its segment-tree paths (nothing past the last block). */
  #refresh(pos: number): void {
    if (pos >= this.#nb) return;
    const b = this.#order[pos] ?? 0;
    for (let k = 0; k < this.#orders; k++) {
      const f = this.#blockFit(pos, this.#alignList[k] ?? 1);
      const byId = this.#fitById[k];
      const seg = this.#seg[k];
      if (byId === undefined || seg === undefined) continue;
      byId[b] = f;
      let j = this.#leaves + pos;
      seg[j] = f;
      for (j >>= 1; j >= 1; j >>= 1) {
        const m = Math.max(seg[2 * j] ?? -Infinity, seg[2 * j + 1] ?? -Infinity);
        if (seg[j] === m) break;
        seg[j] = m;
      }
    }
  }

  /** Block pos's bound for order-list k rose to f: its leaf and the ancestors below f follow. */
  #raise(k: number, pos: number, f: number): void {
    const seg = this.#seg[k];
    if (seg === undefined) return;
    for (let j = this.#leaves + pos; j >= 1 && (seg[j] ?? -Infinity) < f; j >>= 1) seg[j] = f;
  }

  /** Puts [lo, hi] at index i of block pos (which has room) and refreshes the bounds it changes. */
  #insertIn(pos: number, i: number, lo: number, hi: number): void {
    const b = this.#order[pos] ?? 0;
    const L = this.#loOf(b);
    const H = this.#hiOf(b);
    let base = this.#base(b);
    const n = this.#count[b] ?? 0;
    const s0 = this.#start[b] ?? 0;
    // Make room from the nearer end that has some (a block with room has it at one end at least).
    if (s0 > 0 && (i < n - i || s0 + n >= BLOCK)) {
      for (let j = base - 1; j < base - 1 + i; j++) {
        L[j] = L[j + 1] ?? 0;
        H[j] = H[j + 1] ?? 0;
      }
      this.#start[b] = s0 - 1;
      base--;
    } else {
      for (let j = base + n; j > base + i; j--) {
        L[j] = L[j - 1] ?? 0;
        H[j] = H[j - 1] ?? 0;
      }
    }
    L[base + i] = lo;
    H[base + i] = hi;
    this.#count[b] = n + 1;
    // The new range splits one gap in two: [G, lo) is its own gap now, and the rest lies below the
    // range after it (entry i + 1 here, or for a new last range the first of the next block). Neither
    // part fits more than the whole did, so a bound can shrink only where the whole gap was the best.
    const g = i > 0 ? (H[base + i - 1] ?? 0) + 1 : this.#lastHiBefore(pos) + 1;
    if (i < n) {
      if (this.#wasBest(b, g, L[base + i + 1] ?? 0)) this.#refresh(pos);
    } else {
      if (pos + 1 < this.#nb) {
        const c = this.#order[pos + 1] ?? 0;
        if (this.#wasBest(c, g, this.#loOf(c)[this.#base(c)] ?? 0)) this.#refresh(pos + 1);
      }
      this.#widened(pos, i);
    }
  }

  /** Whether the gap [g, top) reached block b's bound for some order in use. */
  #wasBest(b: number, g: number, top: number): boolean {
    for (let k = 0; k < this.#orders; k++) {
      const align = this.#alignList[k] ?? 1;
      if (top - Math.ceil(g / align) * align >= (this.#fitById[k]?.[b] ?? -Infinity)) return true;
    }
    return false;
  }

  /** The gap below entry i of block pos grew (a range below it went or was added): bounds can only rise. */
  #widened(pos: number, i: number): void {
    if (pos >= this.#nb) return;
    const b = this.#order[pos] ?? 0;
    const base = this.#base(b);
    const top = this.#loOf(b)[base + i] ?? 0;
    const gs = i > 0 ? (this.#hiOf(b)[base + i - 1] ?? 0) + 1 : this.#lastHiBefore(pos) + 1;
    for (let k = 0; k < this.#orders; k++) {
      const align = this.#alignList[k] ?? 1;
      const f = top - Math.ceil(gs / align) * align;
      const byId = this.#fitById[k];
      if (byId === undefined || f <= (byId[b] ?? -Infinity)) continue;
      byId[b] = f;
      this.#raise(k, pos, f);
    }
  }

  /** Splits full block `pos` in halves; the upper half becomes block pos + 1. */
  #split(pos: number): void {
    // A full block starts at slot 0; both halves do.
    this.#addBlock(pos + 1, 0);
    const b = this.#order[pos] ?? 0;
    const c = this.#order[pos + 1] ?? 0;
    const half = BLOCK >> 1;
    const bb = this.#base(b);
    const cb = this.#base(c);
    this.#loOf(c).set(this.#loOf(b).subarray(bb + half, bb + BLOCK), cb);
    this.#hiOf(c).set(this.#hiOf(b).subarray(bb + half, bb + BLOCK), cb);
    this.#count[b] = half;
    this.#count[c] = BLOCK - half;
    this.#refresh(pos);
    this.#refresh(pos + 1);
  }

  /**
   * An empty block at position pos (later ones move up one), its entries to start at slot `start`; its
   * bound is -Infinity until filled.
   */
  #addBlock(pos: number, start: number): void {
    const b = this.#newId();
    if (this.#nb >= this.#order.length) {
      const o = new Int32Array(this.#order.length * 2);
      o.set(this.#order);
      this.#order = o;
    }
    this.#order.copyWithin(pos + 1, pos, this.#nb);
    this.#order[pos] = b;
    this.#count[b] = 0;
    this.#start[b] = start;
    for (let k = 0; k < this.#orders; k++) {
      const byId = this.#fitById[k];
      if (byId !== undefined) byId[b] = -Infinity;
    }
    this.#nb++;
    if (this.#nb > this.#leaves) this.#rebuild(0, this.#nb);
    else this.#rebuild(pos, this.#nb);
  }

  /** Drops the empty block at position pos and recycles its id. */
  #removeBlock(pos: number): void {
    const b = this.#order[pos] ?? 0;
    this.#order.copyWithin(pos, pos + 1, this.#nb);
    this.#nb--;
    this.#freeIds.push(b);
    this.#rebuild(pos, this.#nb + 1);
  }

  /** Re-lays the segment-tree leaves of positions [from, to) from the per-block bounds, and their ancestors. */
  #rebuild(from: number, to: number): void {
    let leaves = this.#leaves;
    while (leaves < this.#nb) leaves *= 2;
    if (leaves !== this.#leaves || (this.#seg[0]?.length ?? 0) !== 2 * leaves) {
      this.#leaves = leaves;
      for (let k = 0; k < this.#orders; k++) this.#seg[k] = new Float64Array(2 * leaves).fill(-Infinity);
      from = 0;
      to = leaves;
    }
    for (let k = 0; k < this.#orders; k++) {
      const seg = this.#seg[k];
      const byId = this.#fitById[k];
      if (seg === undefined || byId === undefined) continue;
      for (let pos = from; pos < to && pos < leaves; pos++) {
        seg[leaves + pos] = pos < this.#nb ? (byId[this.#order[pos] ?? 0] ?? -Infinity) : -Infinity;
      }
      let a = (leaves + from) >> 1;
      let z = (leaves + Math.max(from, Math.min(to, leaves) - 1)) >> 1;
      for (; a >= 1; a >>= 1, z >>= 1) {
        for (let j = a; j <= z; j++) seg[j] = Math.max(seg[2 * j] ?? -Infinity, seg[2 * j + 1] ?? -Infinity);
      }
    }
  }

  /** The position of the last block whose first pfn_lo is <= pfn, or -1. */
  #blockAtOrBelow(pfn: number): number {
    let a = 0;
    let z = this.#nb - 1;
    let r = -1;
    while (a <= z) {
      const m = (a + z) >> 1;
      const b = this.#order[m] ?? 0;
      if ((this.#loOf(b)[this.#base(b)] ?? 0) <= pfn) {
        r = m;
        a = m + 1;
      } else z = m - 1;
    }
    return r;
  }

  /** Index of block b's first entry in its chunk. */
  #base(b: number): number {
    return ((b & (CHUNK_BLOCKS - 1)) << BLOCK_SHIFT) + (this.#start[b] ?? 0);
  }

  #loOf(b: number): Float64Array {
    return this.#loChunks[b >> CHUNK_SHIFT] ?? this.#empty;
  }

  #hiOf(b: number): Float64Array {
    return this.#hiChunks[b >> CHUNK_SHIFT] ?? this.#empty;
  }

  /** A block id: a recycled one, else the next, adding a storage chunk when it starts a new one. */
  #newId(): number {
    const recycled = this.#freeIds.pop();
    if (recycled !== undefined) return recycled;
    const b = this.#ids++;
    if (b >> CHUNK_SHIFT >= this.#loChunks.length) {
      this.#loChunks.push(new Float64Array(CHUNK_BLOCKS << BLOCK_SHIFT));
      this.#hiChunks.push(new Float64Array(CHUNK_BLOCKS << BLOCK_SHIFT));
    }
    if (b >= this.#count.length) {
      const c = new Int32Array(this.#count.length * 2);
      c.set(this.#count);
      this.#count = c;
      const st = new Int32Array(c.length);
      st.set(this.#start);
      this.#start = st;
      for (let k = 0; k < this.#orders; k++) {
        const old = this.#fitById[k];
        const f = new Float64Array(c.length).fill(-Infinity);
        if (old !== undefined) f.set(old);
        this.#fitById[k] = f;
      }
    }
    return b;
  }

  /** Index of `order` in the lists, adding its bounds (one pass over every block) on first use. */
  #ensureOrder(order: number): number {
    const have = this.#orderIndex[order] ?? -1;
    if (have >= 0) return have;
    const k = this.#orders++;
    this.#orderIndex[order] = k;
    this.#alignList[k] = 2 ** order;
    const byId = new Float64Array(this.#count.length).fill(-Infinity);
    this.#fitById[k] = byId;
    this.#seg[k] = new Float64Array(2 * this.#leaves).fill(-Infinity);
    for (let pos = 0; pos < this.#nb; pos++) byId[this.#order[pos] ?? 0] = this.#blockFit(pos, 2 ** order);
    if (this.#nb > 0) this.#rebuild(0, this.#leaves);
    return k;
  }
}

/** #scan's "no fit in this block, and lower blocks may still hold one". */
const NOT_HERE = -2;

/** The first index in [0, n) of the block at `base` whose pfn_lo is > key (n if none). */
function upperBound(lo: Float64Array, base: number, n: number, key: number): number {
  let a = 0;
  let z = n;
  while (a < z) {
    const m = (a + z) >> 1;
    if ((lo[base + m] ?? 0) <= key) a = m + 1;
    else z = m;
  }
  return a;
}

/** The highest position <= pos whose leaf is >= need, or -1: a descent of the max segment tree. */
function prevAtLeast(seg: Float64Array, leaves: number, pos: number, need: number): number {
  let j = leaves + pos;
  if ((seg[j] ?? -Infinity) >= need) return pos;
  while (j > 1) {
    if ((j & 1) === 1 && (seg[j - 1] ?? -Infinity) >= need) {
      j--;
      while (j < leaves) j = (seg[2 * j + 1] ?? -Infinity) >= need ? 2 * j + 1 : 2 * j;
      return j - leaves;
    }
    j >>= 1;
  }
  return -1;
}
