import { IOVA_ANCHOR } from "./constants.js";

/** Index of no node. Node 1 is the anchor; real ranges use 2 and up. */
export const NIL = 0;
export const ANCHOR_NODE = 1;

/** Alignment orders a tree can be asked for: PFNs are below 2^53. */
const MAX_ORDERS = 64;

/**
 * The allocated ranges of one IOVA domain: an AVL tree keyed by `pfn_lo`, held in typed arrays (a node
 * pool with a free list, no object per range).
 *
 * Upstream (drivers/iommu/iova.c) keeps the same ranges in an rbtree and finds space by walking it
 * backwards from a cached node, one range at a time, which is linear in the number of ranges when the
 * space below the cache is fragmented. Here every node also knows the free gap just below it
 * (`gapStart[x]` .. `lo[x]`), and every subtree knows, for each alignment order k, the largest size
 * that fits 2^k-aligned in any of its gaps. "Highest aligned gap of >= n pages between two bounds" is
 * then answered by one descent: a subtree whose bound says "no" is skipped, and one wholly between the
 * bounds whose bound says "yes" certainly holds the answer, so only the two boundary paths can make the
 * search step back. Worst case O(log n) per query, for every order (orders are added on first use).
 */
export class IovaTree {
  #cap = 0;
  lo: Float64Array = new Float64Array(0);
  hi: Float64Array = new Float64Array(0);
  /** First free PFN below this node: predecessor's pfn_hi + 1 (0 for the lowest node). */
  gapStart: Float64Array = new Float64Array(0);
  #left: Int32Array = new Int32Array(0);
  #right: Int32Array = new Int32Array(0);
  #height: Int32Array = new Int32Array(0);
  /** The bound array of an order not in use (never written: it has no elements). */
  readonly #noFit = new Float64Array(0);
  /**
   * #fit[k][x]: max over x's subtree of (gap end - gap start aligned up to 2^k), for the orders k in use
   * only (a hole elsewhere). Every insert and remove recomputes the bounds along a path for every order
   * kept, so keeping only the orders asked for (typically 0 and the order of one large size) rather
   * than every order up to the largest makes that several times cheaper.
   */
  // One slot per possible order, #noFit where unused: an array that is always full and always holds typed
  // arrays has the same elements kind in every tree (a growing, holey one differed between trees that had
  // added different orders, and made the lookups below polymorphic once a second tree was in use).
  #fit: Float64Array[] = Array.from({ length: MAX_ORDERS }, () => this.#noFit);
  /** The same arrays, densely, with their alignments: what #recompute loops over. */
  #fitList: Float64Array[] = [];
  /**
   * 2^order of each array in #fitList, in a typed array: a plain array here held small integers until a
   * `2 ** order` arrived as a double and turned it (and, through the allocation site, every tree's) into a
   * double array, a "wrong map" deoptimisation of #recompute after which the insert path was no longer
   * inlined, for the rest of the process. Orders are below 64 (PFNs are below 2^53).
   */
  readonly #alignList = new Float64Array(MAX_ORDERS);
  readonly #orderList = new Int32Array(MAX_ORDERS);
  #orders = 0;
  #root = NIL;
  #freeHead = NIL;
  #next = 2;
  #size = 0;
  #minOut = NIL;

  constructor(initialCapacity = 64) {
    this.#grow(Math.max(4, initialCapacity));
    this.#ensureOrder(0);
    this.lo[ANCHOR_NODE] = IOVA_ANCHOR;
    this.hi[ANCHOR_NODE] = IOVA_ANCHOR;
    this.gapStart[ANCHOR_NODE] = 0;
    this.#recompute(ANCHOR_NODE);
    this.#root = ANCHOR_NODE;
  }

  /** Ranges in the tree, the anchor not counted. */
  get size(): number {
    return this.#size;
  }

  get height(): number {
    return this.#height[this.#root] ?? 0;
  }

  /** The node whose [lo, hi] holds `pfn`, or NIL (private_find_iova). */
  find(pfn: number): number {
    let x = this.#root;
    const lo = this.lo;
    const hi = this.hi;
    while (x !== NIL) {
      if (pfn < (lo[x] ?? 0)) x = this.#left[x] ?? NIL;
      else if (pfn > (hi[x] ?? 0)) x = this.#right[x] ?? NIL;
      else return x;
    }
    return NIL;
  }

  /** The node after `x` in address order (rb_next); the anchor has none. */
  next(x: number): number {
    const key = this.lo[x] ?? 0;
    let best = NIL;
    let y = this.#root;
    while (y !== NIL) {
      if ((this.lo[y] ?? 0) > key) {
        best = y;
        y = this.#left[y] ?? NIL;
      } else y = this.#right[y] ?? NIL;
    }
    return best;
  }

  /** The first node whose range ends at or above `pfn` (the anchor at worst). */
  ceilingByHi(pfn: number): number {
    let best = NIL;
    let y = this.#root;
    while (y !== NIL) {
      if ((this.hi[y] ?? 0) >= pfn) {
        best = y;
        y = this.#left[y] ?? NIL;
      } else y = this.#right[y] ?? NIL;
    }
    return best;
  }

  /** Inserts [lo, hi]; the caller guarantees it overlaps nothing. Returns the node. */
  insert(lo: number, hi: number): number {
    const n = this.#allocNode();
    this.lo[n] = lo;
    this.hi[n] = hi;
    // The new range splits the gap below its successor, which lies on the insertion path and so is
    // recomputed on the way back up.
    const s = this.ceilingByHi(lo);
    this.gapStart[n] = this.gapStart[s] ?? 0;
    this.gapStart[s] = hi + 1;
    this.#left[n] = NIL;
    this.#right[n] = NIL;
    this.#recompute(n);
    this.#root = this.#insertAt(this.#root, n);
    this.#size++;
    return n;
  }

  /** Removes node `x` (never the anchor); its gap merges into its successor's. */
  remove(x: number): void {
    const s = this.next(x);
    this.gapStart[s] = this.gapStart[x] ?? 0;
    this.#root = this.#removeAt(this.#root, x);
    this.#left[x] = this.#freeHead;
    this.#freeHead = x;
    this.#size--;
  }

  /** Drops every range; the tree is back to the anchor alone. */
  clear(): void {
    this.#root = ANCHOR_NODE;
    this.#freeHead = NIL;
    this.#next = 2;
    this.#size = 0;
    this.#left[ANCHOR_NODE] = NIL;
    this.#right[ANCHOR_NODE] = NIL;
    this.gapStart[ANCHOR_NODE] = 0;
    this.#recompute(ANCHOR_NODE);
  }

  /**
   * The highest PFN p, a multiple of 2^order, with lowB <= p, p + size <= highB and [p, p + size)
   * free; -1 if none.
   */
  highestFit(size: number, order: number, lowB: number, highB: number): number {
    // An integer below 64 held as a small integer, whatever arithmetic produced it: it indexes arrays.
    order |= 0;
    this.#ensureOrder(order);
    const fit = this.#fit[order] ?? this.#noFit;
    if (fit === this.#noFit) return -1;
    return this.#search(this.#root, fit, size, 2 ** order, lowB, highB);
  }

  /** Calls `fn(lo, hi)` for every range in address order, anchor excluded. */
  forEach(fn: (lo: number, hi: number, node: number) => void): void {
    const stack: number[] = [];
    let x = this.#root;
    while (x !== NIL || stack.length > 0) {
      while (x !== NIL) {
        stack.push(x);
        x = this.#left[x] ?? NIL;
      }
      x = stack.pop() ?? NIL;
      if (x !== ANCHOR_NODE) fn(this.lo[x] ?? 0, this.hi[x] ?? 0, x);
      x = this.#right[x] ?? NIL;
    }
  }

  /** Checks every structural invariant; for tests. Returns a description of the first breach or "". */
  check(): string {
    let prevHi = -1;
    let problem = "";
    const visit = (x: number): void => {
      if (x === NIL || problem !== "") return;
      const l = this.#left[x] ?? NIL;
      const r = this.#right[x] ?? NIL;
      visit(l);
      const lo = this.lo[x] ?? 0;
      if (lo <= prevHi) problem = `node ${x} [${lo}] overlaps or is out of order`;
      if ((this.gapStart[x] ?? 0) !== prevHi + 1) problem = `node ${x} gapStart ${this.gapStart[x]} != ${prevHi + 1}`;
      prevHi = this.hi[x] ?? 0;
      const hl = this.#height[l] ?? 0;
      const hr = this.#height[r] ?? 0;
      if (Math.abs(hl - hr) > 1 || this.#height[x] !== 1 + Math.max(hl, hr)) problem = `node ${x} unbalanced`;
      for (let k = 0; k < this.#fit.length; k++) {
        const f = this.#fit[k];
        if (f === undefined || f === this.#noFit) continue;
        const want = Math.max(this.#local(x, 2 ** k), f[l] ?? -Infinity, f[r] ?? -Infinity);
        if (f[x] !== want) problem = `node ${x} fit[${k}] ${f[x]} != ${want}`;
      }
      visit(r);
    };
    visit(this.#root);
    return problem;
  }

  #search(x: number, fit: Float64Array, size: number, align: number, lowB: number, highB: number): number {
    if (x === NIL || (fit[x] ?? -Infinity) < size) return -1;
    const lo = this.lo[x] ?? 0;
    const gs = this.gapStart[x] ?? 0;
    if (lo < highB) {
      const r = this.#search(this.#right[x] ?? NIL, fit, size, align, lowB, highB);
      if (r >= 0) return r;
    }
    if (gs < highB && lo > lowB) {
      const b = lo < highB ? lo : highB;
      if (b >= size) {
        const p = Math.floor((b - size) / align) * align;
        if (p >= gs && p >= lowB) return p;
      }
    }
    if (gs > lowB) return this.#search(this.#left[x] ?? NIL, fit, size, align, lowB, highB);
    return -1;
  }

  #local(x: number, align: number): number {
    const a = this.gapStart[x] ?? 0;
    return (this.lo[x] ?? 0) - Math.ceil(a / align) * align;
  }

  #recompute(x: number): void {
    const l = this.#left[x] ?? NIL;
    const r = this.#right[x] ?? NIL;
    const hl = this.#height[l] ?? 0;
    const hr = this.#height[r] ?? 0;
    this.#height[x] = 1 + (hl > hr ? hl : hr);
    const a = this.gapStart[x] ?? 0;
    const b = this.lo[x] ?? 0;
    const fits = this.#fitList;
    const aligns = this.#alignList;
    for (let i = 0; i < fits.length; i++) {
      const f = fits[i];
      if (f === undefined) continue;
      const align = aligns[i] ?? 1;
      let m = b - Math.ceil(a / align) * align;
      const fl = f[l] ?? -Infinity;
      const fr = f[r] ?? -Infinity;
      if (fl > m) m = fl;
      if (fr > m) m = fr;
      f[x] = m;
    }
  }

  #insertAt(x: number, n: number): number {
    if (x === NIL) return n;
    if ((this.lo[n] ?? 0) < (this.lo[x] ?? 0)) this.#left[x] = this.#insertAt(this.#left[x] ?? NIL, n);
    else this.#right[x] = this.#insertAt(this.#right[x] ?? NIL, n);
    return this.#balance(x);
  }

  #removeAt(x: number, n: number): number {
    if (x === NIL) return NIL;
    if (x === n) {
      const l = this.#left[n] ?? NIL;
      const r = this.#right[n] ?? NIL;
      if (r === NIL) return l;
      // Splice the successor (leftmost of the right subtree) into n's place, keeping node identities.
      const newRight = this.#removeMin(r);
      const s = this.#minOut;
      this.#left[s] = l;
      this.#right[s] = newRight;
      return this.#balance(s);
    }
    if ((this.lo[n] ?? 0) < (this.lo[x] ?? 0)) this.#left[x] = this.#removeAt(this.#left[x] ?? NIL, n);
    else this.#right[x] = this.#removeAt(this.#right[x] ?? NIL, n);
    return this.#balance(x);
  }

  #removeMin(x: number): number {
    const l = this.#left[x] ?? NIL;
    if (l === NIL) {
      this.#minOut = x;
      return this.#right[x] ?? NIL;
    }
    this.#left[x] = this.#removeMin(l);
    return this.#balance(x);
  }

  #balance(x: number): number {
    const h = this.#height;
    const l = this.#left[x] ?? NIL;
    const r = this.#right[x] ?? NIL;
    const bf = (h[l] ?? 0) - (h[r] ?? 0);
    if (bf > 1) {
      if ((h[this.#left[l] ?? NIL] ?? 0) < (h[this.#right[l] ?? NIL] ?? 0)) this.#left[x] = this.#rotateLeft(l);
      return this.#rotateRight(x);
    }
    if (bf < -1) {
      if ((h[this.#right[r] ?? NIL] ?? 0) < (h[this.#left[r] ?? NIL] ?? 0)) this.#right[x] = this.#rotateRight(r);
      return this.#rotateLeft(x);
    }
    this.#recompute(x);
    return x;
  }

  #rotateRight(x: number): number {
    const l = this.#left[x] ?? NIL;
    this.#left[x] = this.#right[l] ?? NIL;
    this.#right[l] = x;
    this.#recompute(x);
    this.#recompute(l);
    return l;
  }

  #rotateLeft(x: number): number {
    const r = this.#right[x] ?? NIL;
    this.#right[x] = this.#left[r] ?? NIL;
    this.#left[r] = x;
    this.#recompute(x);
    this.#recompute(r);
    return r;
  }

  #allocNode(): number {
    if (this.#freeHead !== NIL) {
      const n = this.#freeHead;
      this.#freeHead = this.#left[n] ?? NIL;
      return n;
    }
    if (this.#next >= this.#cap) this.#grow(this.#cap * 2);
    return this.#next++;
  }

  #grow(cap: number): void {
    const f64 = (old: Float64Array): Float64Array => {
      const a = new Float64Array(cap);
      a.set(old);
      return a;
    };
    const i32 = (old: Int32Array): Int32Array => {
      const a = new Int32Array(cap);
      a.set(old);
      return a;
    };
    this.lo = f64(this.lo);
    this.hi = f64(this.hi);
    this.gapStart = f64(this.gapStart);
    this.#left = i32(this.#left);
    this.#right = i32(this.#right);
    this.#height = i32(this.#height);
    this.#fitList = this.#fitList.map((f) => {
      const a = f64(f);
      a.fill(-Infinity, this.#cap);
      return a;
    });
    this.#fit.fill(this.#noFit);
    for (let i = 0; i < this.#orders; i++) this.#fit[this.#orderList[i] ?? 0] = this.#fitList[i] ?? this.#noFit;
    this.#cap = cap;
  }

  /** Adds the bound array of `order`, filled by one post-order pass (happens once per order). */
  #ensureOrder(order: number): void {
    if (this.#fit[order] !== this.#noFit) return;
    const f = new Float64Array(this.#cap).fill(-Infinity);
    this.#fit[order] = f;
    this.#fitList.push(f);
    this.#alignList[this.#orders] = 2 ** order;
    this.#orderList[this.#orders++] = order;
    const post = (x: number): void => {
      if (x === NIL) return;
      post(this.#left[x] ?? NIL);
      post(this.#right[x] ?? NIL);
      this.#recompute(x);
    };
    post(this.#root);
  }
}
