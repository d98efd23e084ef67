import type { FaultAttr } from "@dmasim/trace";
import * as pte from "./pte.js";

// Module-local copies of what every loop below reads. Kept for a figure: named imports in their place
// made the two-step batch 3 % slower (dma.bench.ts as native modules, interleaved A/B, 16 rounds; within
// the machine's noise, so worth re-measuring on a quiet one).
const N = pte.ENTRIES_PER_TABLE;
const LEVEL_SIZE = pte.LEVEL_SIZE;
const PTE_ADDR_UNIT = pte.PTE_ADDR_UNIT;
const PTE_LEAF = pte.PTE_LEAF;
const PTE_PENDING = pte.PTE_PENDING;
const PTE_PROT_UNIT = pte.PTE_PROT_UNIT;
const PTE_VALID = pte.PTE_VALID;
const pteAddr = pte.pteAddr;
const pteIsLeaf = pte.pteIsLeaf;
const pteTable = pte.pteTable;
const tableIndex = pte.tableIndex;
const TWO_32 = 4294967296;
/** Tables per storage chunk by default: 64 tables of 4 KiB = 256 KiB of host memory per chunk. */
const CHUNK_SHIFT = 6;

/**
 * A multi-level IO page table of 512-entry tables, held in fixed-size chunks of Float64Array (by
 * default 64 tables each) indexed by table number (table 0 is the root): table t is the 512-slot window at
 * (t & chunkMask) * 512 of chunk t >> chunkShift, plus one entry of `used` (its count of valid
 * entries). No object exists per table or per page. Chunks are never moved nor copied once full-size:
 * storage grows by one chunk, so the cost of a table does not rise with the size of the tree, and host
 * memory stays within one chunk of the 4 KiB per table the hardware uses (8 bytes per 4 KiB page). Only
 * the first chunk starts small (8 tables) and doubles up to full size, so that a small domain stays small.
 *
 * Page-table pages are freed the way the kernel frees them, not when they empty: unmap detaches a
 * table only when the range covers the whole span of the entry pointing to it (VT-d's
 * dma_pte_clear_level in drivers/iommu/intel/iommu.c, ARM's __arm_lpae_unmap in
 * drivers/iommu/io-pgtable-arm.c). A table emptied entry by entry stays linked, empty, and later maps
 * reuse it; a large leaf mapped over such an empty table replaces it and frees it at once (ARM's
 * arm_lpae_init_pte, VT-d's switch_to_super_page). So a linked table may be empty, and "is anything
 * mapped here" has to look inside (using `used` to skip empty tables).
 *
 * This class trusts its caller for argument checking (IommuDomain validates), except for the IOVA of
 * the single-leaf paths (mapLeaf, unmapLeaf), which check it themselves because a hit in their walk
 * cache already answers most of the checks. It only does the work and reports counts in the `last*`
 * fields, which avoids allocating a result object per call.
 */
export class IoPageTable {
  readonly levels: number;
  /** Levels that may hold leaves, largest first (3 = 1 GiB, 2 = 2 MiB, 1 = 4 KiB). */
  readonly #leafLevels: number[];
  /** Chunk k holds tables [k << #chunkShift, (k + 1) << #chunkShift); only chunk 0 may be shorter. */
  readonly #chunks: Float64Array[];
  readonly #chunkShift: number;
  readonly #chunkMask: number;
  /** What a read of a chunk past the end returns (never happens for a linked table): 0-length. */
  readonly #noChunk = new Float64Array(0);
  #used: Uint16Array;
  /**
   * Per table, for the trace only: its level (the root's is `levels`) and the first IOVA it covers.
   * Written when a table is linked (rare next to leaf writes), read when one is freed.
   */
  #tableLevel: Uint8Array;
  #tableBase: Float64Array;
  #tablesCapacity: number;
  #nextTable = 1;
  #free: number[] = [];
  #pendingFree = 0;
  /** Fault injection on page-table page allocation (iommu_alloc_pages_node failing); undefined = never. */
  readonly #fault: FaultAttr | undefined;
  /**
   * One-entry cache of the last walk of mapLeaf / unmapLeaf: the table holding leaves of level
   * #cacheLevel for IOVAs in [#cacheBase, #cacheBase + #cacheSpan). Successive small calls land in the
   * same table (an IOVA allocator hands out neighbours), and this skips the walk down to it. Valid while
   * that table stays linked, so every detach empties it (#cacheSpan = 0 matches nothing). Tables are
   * only ever linked by map, never moved, so nothing else can make it wrong.
   */
  #cacheLevel = 0;
  #cacheBase = 0;
  #cacheSpan = 0;
  #cacheTable = 0;
  /** The chunk holding #cacheTable and the table's first slot in it. */
  #cacheChunk: Float64Array;
  #cacheOffset = 0;
  /**
   * 1 / the leaf size of #cacheLevel: the index of a leaf in the cached table is its offset from
   * #cacheBase times this (exact: a power of two), with no per-level switch.
   */
  #cacheInvSize = 0;
  /** The leaf size of #cacheLevel (what a hit of unmapLeaf returns): one field load, not a table lookup. */
  #cacheLeafSize = 0;
  /**
   * Leaves the single-leaf hits added to (+) or cleared from (-) the cached table and not yet added to
   * its `#used` count: a small-integer field is one load and store, where `#used[t]` is the array's
   * field, its data pointer, a bounds check, then the element. Folded into `#used` by #flushUsed, which
   * runs before the cached table changes and at the entry of every method that reads a count (other
   * writes to `#used` only add, so they commute with it). Kept for a figure: unmap_fast of one page
   * 7.3 -> 6.7 ns (CPU time, `pnpm bench:vs-c 11`, four runs each, base and branch interleaved).
   */
  #cacheDelta = 0;

  /** Written by map/unmap/syncMap/walk. */
  lastPtesWritten = 0;
  lastPtesCleared = 0;
  lastTablesAllocated = 0;
  /** Empty tables the last `map` replaced with large leaves and freed at once (usually 0). */
  lastTablesFreed = 0;
  lastWalkLevels = 0;
  lastWalkLevel = 0;
  /** Tables the last `map` linked, in order (the single-leaf paths leave it alone). */
  readonly lastAllocatedTables: number[] = [];
  /** Empty tables the last `map` replaced with large leaves (their numbers: level and base stay readable). */
  readonly lastFreedTables: number[] = [];

  /**
   * `initialTables` sizes the first chunk (at most a chunk); `chunkTables` (a power of two, default 64)
   * is the chunk size: tests make it small to exercise tables spread over many chunks.
   */
  constructor(levels: number, pgsizeBitmap: number, initialTables = 8, fault?: FaultAttr, chunkTables = 1 << CHUNK_SHIFT) {
    this.levels = levels;
    this.#fault = fault;
    this.#leafLevels = [];
    for (let l = Math.min(levels, 3); l >= 1; l--) if ((pgsizeBitmap & (LEVEL_SIZE[l] ?? 0)) !== 0) this.#leafLevels.push(l);
    this.#chunkShift = Math.max(0, Math.round(Math.log2(chunkTables)));
    this.#chunkMask = (1 << this.#chunkShift) - 1;
    this.#tablesCapacity = Math.min(Math.max(2, initialTables), 1 << this.#chunkShift);
    this.#chunks = [new Float64Array(this.#tablesCapacity * N)];
    this.#used = new Uint16Array(this.#tablesCapacity);
    this.#tableLevel = new Uint8Array(this.#tablesCapacity);
    this.#tableLevel[0] = levels;
    this.#tableBase = new Float64Array(this.#tablesCapacity);
    this.#cacheChunk = this.#noChunk;
    // The walk cache's base, span and inverse leaf size are doubles as soon as a walk fills them (an IOVA
    // at or above 2^30, a 1 GiB span, 1/4096). A field first stored as a small integer and later as a
    // double changes representation, which gives every table made before that moment a deprecated hidden
    // class: code optimised on one table then deoptimises ("wrong map") on the next and ends up checking
    // for both, for the rest of the process. Storing a double first makes the fields doubles from birth.
    this.#cacheBase = 0.5;
    this.#cacheBase = 0;
    this.#cacheSpan = 0.5;
    this.#cacheSpan = 0;
    this.#cacheInvSize = 0.5;
    this.#cacheInvSize = 0;
    this.#cacheLeafSize = 0.5;
    this.#cacheLeafSize = 0;
  }

  /** Level of table `t` (1 holds 4 KiB leaves; the root's is `levels`). */
  tableLevel(t: number): number {
    return this.#tableLevel[t] ?? 0;
  }

  /** First IOVA table `t` covers. */
  tableBase(t: number): number {
    return this.#tableBase[t] ?? 0;
  }

  /** Records where a freshly linked table sits: level `level`, covering IOVAs from `base`. */
  #place(t: number, level: number, base: number): void {
    this.#tableLevel[t] = level;
    this.#tableBase[t] = base;
  }

  /** The chunk holding table `t`. */
  #chunk(t: number): Float64Array {
    return this.#chunks[t >>> this.#chunkShift] ?? this.#noChunk;
  }

  /** The index of table `t`'s first entry in its chunk. */
  #offset(t: number): number {
    return (t & this.#chunkMask) * N;
  }

  /** Host memory the table storage holds: the chunks and the use counts (bytes). */
  get hostBytes(): number {
    let n = this.#used.byteLength;
    for (const c of this.#chunks) n += c.byteLength;
    return n;
  }

  /** Tables held: linked into the tree plus detached and not yet released. The root counts. */
  get tables(): number {
    return this.#nextTable - this.#free.length;
  }

  /** Tables detached by unmap and not yet released. */
  get pendingFree(): number {
    return this.#pendingFree;
  }

  /** The raw entry at `index` of table `table` (for inspection and tests). */
  entry(table: number, index: number): number {
    if (table < 0 || table >= this.#tablesCapacity) return 0;
    return this.#chunk(table)[this.#offset(table) + index] ?? 0;
  }

  /** The largest leaf level that iova, phys and the remaining size all allow (iommu_pgsize). */
  pickLevel(iova: number, phys: number, left: number): number {
    for (const l of this.#leafLevels) {
      const sz = LEVEL_SIZE[l] ?? 0;
      if (left >= sz && iova % sz === 0 && phys % sz === 0) return l;
    }
    return 0;
  }

  /** True when any leaf lies inside [start, end). Reads only; used before map writes anything. */
  hasMapping(start: number, end: number): boolean {
    this.#flushUsed();
    return this.#hasMapping(0, this.levels, 0, start, end);
  }

  #hasMapping(t: number, l: number, tableBase: number, start: number, end: number): boolean {
    const esz = LEVEL_SIZE[l] ?? 0;
    const i0 = Math.floor((Math.max(start, tableBase) - tableBase) / esz);
    const i1 = Math.min(N, Math.ceil((end - tableBase) / esz));
    const c = this.#chunk(t);
    const o = this.#offset(t);
    for (let i = i0; i < i1; i++) {
      const e = c[o + i] ?? 0;
      if (e === 0) continue;
      if (pteIsLeaf(e)) return true;
      const child = pteAddr(e) / PTE_ADDR_UNIT;
      // A linked table may be empty (unmap does not detach emptied tables): look inside it.
      if (this.#used[child] === 0) continue;
      // A non-empty leaf table (l - 1 = 1) holds only leaves: one under a covered span is mapped there.
      if (l === 2 && start <= tableBase + i * esz && end >= tableBase + (i + 1) * esz) return true;
      if (this.#hasMapping(child, l - 1, tableBase + i * esz, start, end)) return true;
    }
    return false;
  }

  /**
   * Writes leaves for [iova, iova+size) → [phys, …), choosing the leaf size per step like iommu_pgsize
   * (drivers/iommu/iommu.c): the largest size allowed by the bitmap, the alignment of both addresses and
   * what is left. Consecutive leaves of one size are written in one run to the end of their table.
   * The caller has checked that the range is empty and aligned to the granule. A large leaf landing on
   * an entry that points to an (empty) table frees that subtree at once, as arm_lpae_init_pte
   * (drivers/iommu/io-pgtable-arm.c) and VT-d's switch_to_super_page do; they are counted in
   * lastTablesFreed.
   *
   * Returns the bytes mapped: `size`, or less when a page-table page could not be allocated (fault
   * injection). Then the leaves written so far stay, and so do the tables linked before the failure
   * (empty ones included), as __arm_lpae_map leaves them: the caller unmaps the part, as iommu_map does.
   */
  map(iova: number, phys: number, size: number, prot: number, pending: boolean): number {
    this.#flushUsed();
    const flags = PTE_VALID + PTE_LEAF + prot * PTE_PROT_UNIT + (pending ? PTE_PENDING : 0);
    let va = iova;
    let pa = phys;
    let left = size;
    let written = 0;
    let allocated = 0;
    let freed = 0;
    this.lastAllocatedTables.length = 0;
    this.lastFreedTables.length = 0;
    while (left > 0) {
      const lvl = this.pickLevel(va, pa, left);
      const esz = LEVEL_SIZE[lvl] ?? 0;
      let t = 0;
      for (let l = this.levels; l > lvl; l--) {
        const slot = this.#offset(t) + (Math.floor(va / (LEVEL_SIZE[l] ?? 0)) % N);
        const e = this.#chunk(t)[slot] ?? 0;
        if (e === 0) {
          const nt = this.#allocTableOrFail();
          if (nt < 0) {
            this.lastPtesWritten = written;
            this.lastTablesAllocated = allocated;
            this.lastTablesFreed = freed;
            return size - left;
          }
          allocated++;
          const span = LEVEL_SIZE[l] ?? 0;
          this.#place(nt, l - 1, Math.floor(va / span) * span);
          this.lastAllocatedTables.push(nt);
          // Re-read the chunk: the allocation may have grown the first chunk into a new array.
          this.#chunk(t)[slot] = nt * PTE_ADDR_UNIT + PTE_VALID;
          this.#used[t] = (this.#used[t] ?? 0) + 1;
          t = nt;
        } else {
          t = pteAddr(e) / PTE_ADDR_UNIT;
        }
      }
      const idx = Math.floor(va / esz) % N;
      const n = Math.min(Math.floor(left / esz), N - idx);
      const slab = this.#chunk(t);
      const base = this.#offset(t) + idx;
      const first = pa + flags;
      let added = n;
      if (lvl > 1) {
        // Entries above the leaf level may point to tables that unmap left empty: free them first.
        for (let i = 0; i < n; i++) {
          const e = slab[base + i] ?? 0;
          if (e === 0) continue;
          freed += this.#freeEmptySubtree(pteAddr(e) / PTE_ADDR_UNIT, lvl - 1);
          added--;
        }
      }
      for (let i = 0; i < n; i++) slab[base + i] = first + i * esz;
      this.#used[t] = (this.#used[t] ?? 0) + added;
      const bytes = n * esz;
      va += bytes;
      pa += bytes;
      left -= bytes;
      written += n;
    }
    this.lastPtesWritten = written;
    this.lastTablesAllocated = allocated;
    this.lastTablesFreed = freed;
    return size;
  }

  /**
   * Frees a subtree that holds no leaf (map checked the range is empty) straight back to the free
   * list: the kernel frees such tables without the gather, after flushing the walk caches. Returns the
   * tables freed.
   */
  #freeEmptySubtree(t: number, l: number): number {
    let n = 1;
    if (l > 1) {
      const c = this.#chunk(t);
      const o = this.#offset(t);
      for (let i = 0; i < N; i++) {
        const e = c[o + i] ?? 0;
        if (e !== 0) n += this.#freeEmptySubtree(pteAddr(e) / PTE_ADDR_UNIT, l - 1);
      }
      c.fill(0, o, o + N);
    }
    // The single-leaf walk cache may point at this table: forgotten (its pending count folded in)
    // before the count is zeroed.
    this.#forget();
    this.#used[t] = 0;
    this.#free.push(t);
    this.lastFreedTables.push(t);
    return n;
  }

  /**
   * mapLeaf's walk-cache hit alone, with no call in it: 0 when it wrote the leaf, -1 when the slot is
   * taken or the IOVA is not a multiple of the leaf size, -2 (nothing written) when the cached table does
   * not cover `iova` and the caller must take mapLeaf. An inlining caller then holds no call that takes
   * the IOVA on its hot path, so TurboFan has no reason to box it (above 2^31, a HeapNumber) there.
   */
  mapLeafCached(iova: number, level: number, leaf: number): number {
    const d = iova - this.#cacheBase;
    if (d >= 0 && d < this.#cacheSpan && level === this.#cacheLevel) {
      const x = d * this.#cacheInvSize;
      const i = x | 0;
      if (i !== x) return -1;
      const slot = this.#cacheOffset + i;
      const c = this.#cacheChunk;
      if (c[slot] !== 0) return -1;
      c[slot] = leaf;
      this.#cacheDelta++;
      return 0;
    }
    return -2;
  }

  /**
   * Writes the one leaf of level `level` at `iova` (entry value `leaf`, built by the caller) in a single
   * walk (none when the cached leaf table covers `iova`) that also checks the slot is free: returns -1,
   * with nothing written, when `iova` is not a multiple of the leaf size in [0, lastIova] (the caller
   * has checked it is a number), when a leaf or a table is already there or a larger leaf covers it,
   * and otherwise the number of tables the walk allocated. Tables are allocated only once the walk has
   * reached an empty entry, below which nothing can be mapped. The count is returned rather than left in
   * lastTablesAllocated: a field store per page-table write kept V8 from reusing loads across a loop of
   * links.
   */
  mapLeaf(iova: number, level: number, leaf: number, lastIova: number): number {
    // Kept small so that the caller can inline it: the cached table is the common case (3.6 ns of a
    // 6.0 ns single-page map, CPU time; the README's profile). The hit is mapLeafCached's, written out
    // rather than called: the public one-page map inlines this method, and its figure (`pnpm bench:vs-c`)
    // was measured with this shape.
    const d = iova - this.#cacheBase;
    if (d >= 0 && d < this.#cacheSpan && level === this.#cacheLevel) {
      // The cached table is never the root (#remember), so it lies wholly inside the IOVA space: a hit
      // is an IOVA in range, and an exact index is a multiple of the leaf size (an integer).
      const x = d * this.#cacheInvSize;
      const i = x | 0;
      if (i !== x) return -1;
      const slot = this.#cacheOffset + i;
      const c = this.#cacheChunk;
      if (c[slot] !== 0) return -1;
      c[slot] = leaf;
      this.#cacheDelta++;
      return 0;
    }
    if (!leafIovaOk(iova, level, lastIova)) return -1;
    return this.#mapLeafWalk(iova, level, leaf);
  }

  #mapLeafWalk(iova: number, level: number, leaf: number): number {
    const low = iova >>> 0;
    const high = (iova / TWO_32) >>> 0;
    let t = 0;
    let l = this.levels;
    for (; l > level; l--) {
      const e = this.#chunk(t)[this.#offset(t) + tableIndex(low, high, l)] ?? 0;
      if (e === 0) break;
      if ((e & PTE_LEAF) !== 0) return -1;
      t = pteTable(e);
    }
    let allocated = 0;
    if (l === level) {
      if ((this.#chunk(t)[this.#offset(t) + tableIndex(low, high, l)] ?? 0) !== 0) return -1;
    } else {
      // While table allocation may fail, the general path (`map`) allocates: it can report the failure.
      if (this.#fault?.armed === true) return -1;
      // The entry at level l is empty: link fresh tables down to the leaf level.
      for (; l > level; l--) {
        const nt = this.#allocTable();
        const span = LEVEL_SIZE[l] ?? 0;
        this.#place(nt, l - 1, Math.floor(iova / span) * span);
        // Chunk looked up after the allocation, which may have grown the first chunk into a new array.
        this.#chunk(t)[this.#offset(t) + tableIndex(low, high, l)] = nt * PTE_ADDR_UNIT + PTE_VALID;
        this.#used[t] = (this.#used[t] ?? 0) + 1;
        allocated++;
        t = nt;
      }
    }
    this.#chunk(t)[this.#offset(t) + tableIndex(low, high, level)] = leaf;
    this.#used[t] = (this.#used[t] ?? 0) + 1;
    this.#remember(iova, level, t);
    return allocated;
  }

  /**
   * Makes `table` (holding leaves of `level` for `iova`) the cached one. The root is never cached: in a
   * small IOVA space (vaBits below its span) it holds entries beyond the space, and the single-leaf
   * paths count on a hit being an IOVA inside it. Any other table spans a power of two no larger than
   * the space, aligned, below an entry a valid IOVA reached.
   */
  #remember(iova: number, level: number, table: number): void {
    this.#flushUsed();
    if (table === 0) {
      this.#forget();
      return;
    }
    const span = LEVEL_SIZE[level + 1] ?? 0;
    this.#cacheLevel = level;
    this.#cacheInvSize = 1 / (LEVEL_SIZE[level] ?? 1);
    this.#cacheLeafSize = LEVEL_SIZE[level] ?? 0;
    this.#cacheBase = Math.floor(iova / span) * span;
    this.#cacheSpan = span;
    this.#cacheTable = table;
    this.#cacheChunk = this.#chunk(table);
    this.#cacheOffset = this.#offset(table);
  }

  #forget(): void {
    this.#flushUsed();
    this.#cacheSpan = 0;
  }

  /** Adds the hits' pending count change (#cacheDelta) to the cached table's `#used` entry. */
  #flushUsed(): void {
    const delta = this.#cacheDelta;
    if (delta !== 0) {
      const t = this.#cacheTable;
      this.#used[t] = (this.#used[t] ?? 0) + delta;
      this.#cacheDelta = 0;
    }
  }

  /**
   * The leaf entry translating `iova` as `walk` finds it (0 for none; sets lastWalkLevel), taking the
   * cached table when it covers `iova`. For iova_to_phys: it does not report the levels read, which is
   * what a device walk is counted by, so `translate` keeps using `walk`.
   */
  lookup(iova: number): number {
    const d = iova - this.#cacheBase;
    if (d >= 0 && d < this.#cacheSpan) {
      const level = this.#cacheLevel;
      // d >= 0, so the truncation is the floor: the index of the leaf holding iova.
      const e = this.#cacheChunk[this.#cacheOffset + ((d * this.#cacheInvSize) | 0)] ?? 0;
      this.lastWalkLevel = e === 0 ? 0 : level;
      return e;
    }
    return this.walk(iova);
  }

  /**
   * Clears the one leaf of level `level` at `iova`. Returns the bytes unmapped (0 for a hole), or -1
   * with nothing changed when `iova` is not a multiple of the leaf size in [0, lastIova] (the caller
   * has checked it is a number) or a larger leaf covers it: the caller then takes the general path,
   * which reports the error or the partial unmap. It never detaches a table: a one-leaf range covers
   * the span of no table entry, and a table it empties stays linked (see the class comment), so the
   * walk cache stays valid. It leaves lastPtesCleared alone: the result says whether one PTE was
   * cleared (> 0) or none, and the store cost 0.4 ns of a 7.2 ns single-page unmap_fast (CPU time, the
   * README's profile), as a field store per write did in mapLeaf.
   */
  unmapLeaf(iova: number, level: number, lastIova: number): number {
    const d = iova - this.#cacheBase;
    if (d >= 0 && d < this.#cacheSpan && level === this.#cacheLevel) {
      // As in mapLeaf: a hit with an exact index is an IOVA the caller's checks would pass.
      const x = d * this.#cacheInvSize;
      const i = x | 0;
      if (i !== x) return -1;
      const slot = this.#cacheOffset + i;
      const c = this.#cacheChunk;
      if (c[slot] === 0) return 0;
      c[slot] = 0;
      this.#cacheDelta--;
      return this.#cacheLeafSize;
    }
    if (!leafIovaOk(iova, level, lastIova)) return -1;
    return this.#unmapLeafWalk(iova, level);
  }

  #unmapLeafWalk(iova: number, level: number): number {
    const low = iova >>> 0;
    const high = (iova / TWO_32) >>> 0;
    let t = 0;
    for (let l = this.levels; l > level; l--) {
      const e = this.#chunk(t)[this.#offset(t) + tableIndex(low, high, l)] ?? 0;
      if (e === 0) return 0;
      if ((e & PTE_LEAF) !== 0) return -1;
      t = pteTable(e);
    }
    this.#remember(iova, level, t);
    const slab = this.#chunk(t);
    const slot = this.#offset(t) + tableIndex(low, high, level);
    if ((slab[slot] ?? 0) === 0) return 0;
    slab[slot] = 0;
    this.#used[t] = (this.#used[t] ?? 0) - 1;
    return LEVEL_SIZE[level] ?? 0;
  }

  /**
   * Walks to the leaf translating `iova`. Returns the leaf entry, or 0 when no leaf is there; sets
   * `lastWalkLevel` (the leaf's level) and `lastWalkLevels` (entries read, as a walk from the root reads
   * them, also when the walk cache shortens it). A walk that reaches a table of 4 KiB leaves makes it
   * the cached one.
   */
  walk(iova: number): number {
    // The cached leaf table, when it covers iova, is where the walk from the root would arrive (it is
    // linked, and only a detach unlinks a table, which empties the cache): read the entry there and
    // count the levels the full walk reads. Kept for a figure: IOTLB miss + walk 70-71 µs per 1024
    // against 90-104 µs without (iommu.bench.ts, mins, base and branch interleaved, two runs each).
    const d = iova - this.#cacheBase;
    if (d >= 0 && d < this.#cacheSpan && this.#cacheLevel === 1) {
      const e = this.#cacheChunk[this.#cacheOffset + ((d * this.#cacheInvSize) | 0)] ?? 0;
      this.lastWalkLevels = this.levels;
      this.lastWalkLevel = e === 0 ? 0 : 1;
      return e;
    }
    let t = 0;
    const low = iova >>> 0;
    const high = (iova / TWO_32) >>> 0;
    // Read once: this is every IOTLB miss of translate.
    const chunks = this.#chunks;
    const shift = this.#chunkShift;
    const mask = this.#chunkMask;
    for (let l = this.levels; l >= 1; l--) {
      const e = (chunks[t >>> shift] ?? this.#noChunk)[(t & mask) * N + tableIndex(low, high, l)] ?? 0;
      if (e === 0) {
        this.lastWalkLevels = this.levels - l + 1;
        this.lastWalkLevel = 0;
        if (l === 1) this.#remember(iova, 1, t);
        return 0;
      }
      if (pteIsLeaf(e)) {
        this.lastWalkLevels = this.levels - l + 1;
        this.lastWalkLevel = l;
        if (l === 1) this.#remember(iova, 1, t);
        return e;
      }
      t = pteTable(e);
    }
    this.lastWalkLevels = this.levels;
    this.lastWalkLevel = 0;
    return 0;
  }

  /**
   * Clears every leaf inside [start, end) (no leaf may straddle an end: the caller checks). A table
   * entry whose whole span is inside the range is cleared with one write and its subtree detached, as
   * VT-d's dma_pte_clear_level and ARM's __arm_lpae_unmap do; any other table is only cleared inside,
   * and stays linked even if that leaves it empty (neither driver frees it). Detached tables are
   * appended to `freed`, parents before children. Returns the bytes that were mapped.
   */
  unmap(start: number, end: number, freed: number[]): number {
    this.#flushUsed();
    this.lastPtesCleared = 0;
    const before = freed.length;
    const bytes = this.#clear(0, this.levels, 0, start, end, freed);
    const detached = freed.length - before;
    if (detached !== 0) {
      this.#pendingFree += detached;
      this.#forget(); // the cached table may be among them
    }
    return bytes;
  }

  /**
   * unmap of a range that lies inside the cached table of 4 KiB leaves without covering its whole span
   * (which would detach the table): the count and clear of #clear's leaf case, without the walk from the
   * root. Returns the bytes unmapped, or -1 with nothing done when the range is not such a range. A
   * range inside a linked leaf table cannot be part of a larger leaf, so the caller's partial-leaf
   * checks are answered too.
   */
  unmapInLeafTable(start: number, end: number): number {
    this.#flushUsed();
    const d = start - this.#cacheBase;
    const e = end - this.#cacheBase;
    if (this.#cacheLevel !== 1 || d < 0 || e > this.#cacheSpan || e <= d || (d === 0 && e === this.#cacheSpan)) return -1;
    const inv = this.#cacheInvSize;
    const n = this.#clearLeaves(this.#cacheTable, Math.floor(d * inv), Math.ceil(e * inv));
    this.lastPtesCleared = n;
    return n * (LEVEL_SIZE[1] ?? 0);
  }

  /** Clears entries [i0, i1) of leaf table t: counts those that were set, then clears the run at once. */
  #clearLeaves(t: number, i0: number, i1: number): number {
    const o = this.#offset(t);
    const first = o + i0;
    const last = o + i1;
    const slab = this.#chunk(t);
    let n = 0;
    for (let slot = first; slot < last; slot++) if (slab[slot] !== 0) n++;
    if (n !== 0) slab.fill(0, first, last);
    this.#used[t] = (this.#used[t] ?? 0) - n;
    return n;
  }

  #clear(t: number, l: number, tableBase: number, start: number, end: number, freed: number[]): number {
    const esz = LEVEL_SIZE[l] ?? 0;
    const i0 = Math.floor((Math.max(start, tableBase) - tableBase) / esz);
    const i1 = Math.min(N, Math.ceil((end - tableBase) / esz));
    if (l === 1) {
      // A leaf table (the common case).
      const n = this.#clearLeaves(t, i0, i1);
      this.lastPtesCleared += n;
      return n * esz;
    }
    const slab = this.#chunk(t);
    const o = this.#offset(t);
    let bytes = 0;
    for (let i = i0; i < i1; i++) {
      const slot = o + i;
      const e = slab[slot] ?? 0;
      if (e === 0) continue;
      if (pteIsLeaf(e)) {
        bytes += esz;
      } else {
        const child = pteAddr(e) / PTE_ADDR_UNIT;
        const base = tableBase + i * esz;
        if (start <= base && end >= base + esz) {
          bytes += this.#detachSubtree(child, l - 1, freed);
        } else {
          // Partly covered: clear inside; the table stays linked even if it is now empty.
          bytes += this.#clear(child, l - 1, base, start, end, freed);
          continue;
        }
      }
      slab[slot] = 0;
      this.#used[t] = (this.#used[t] ?? 0) - 1;
      this.lastPtesCleared++;
    }
    return bytes;
  }

  /** Appends a whole subtree to `freed` and returns the bytes its leaves mapped. */
  #detachSubtree(t: number, l: number, freed: number[]): number {
    freed.push(t);
    if (l === 1) return (this.#used[t] ?? 0) * (LEVEL_SIZE[1] ?? 0);
    let bytes = 0;
    const esz = LEVEL_SIZE[l] ?? 0;
    const c = this.#chunk(t);
    const o = this.#offset(t);
    for (let i = 0; i < N; i++) {
      const e = c[o + i] ?? 0;
      if (e === 0) continue;
      bytes += pteIsLeaf(e) ? esz : this.#detachSubtree(pteAddr(e) / PTE_ADDR_UNIT, l - 1, freed);
    }
    return bytes;
  }

  /** Makes pending leaves overlapping [start, end) visible to the walker. Returns how many changed. */
  syncMap(start: number, end: number): number {
    return this.#sync(0, this.levels, 0, start, end);
  }

  #sync(t: number, l: number, tableBase: number, start: number, end: number): number {
    const esz = LEVEL_SIZE[l] ?? 0;
    const i0 = Math.floor((Math.max(start, tableBase) - tableBase) / esz);
    const i1 = Math.min(N, Math.ceil((end - tableBase) / esz));
    const slab = this.#chunk(t);
    const o = this.#offset(t);
    let n = 0;
    for (let i = i0; i < i1; i++) {
      const slot = o + i;
      const e = slab[slot] ?? 0;
      if (e === 0) continue;
      if (pteIsLeaf(e)) {
        if ((e & PTE_PENDING) !== 0) {
          slab[slot] = e - PTE_PENDING;
          n++;
        }
      } else {
        n += this.#sync(pteAddr(e) / PTE_ADDR_UNIT, l - 1, tableBase + i * esz, start, end);
      }
    }
    return n;
  }

  /** Returns detached tables for reuse; they are zeroed here so allocation can hand them out as is. */
  release(tables: readonly number[]): void {
    if (tables.length === 0) return;
    this.#flushUsed();
    for (const t of tables) {
      const o = this.#offset(t);
      this.#chunk(t).fill(0, o, o + N);
      this.#used[t] = 0;
      this.#free.push(t);
    }
    this.#pendingFree -= tables.length;
  }

  /** #allocTable, or -1 when fault injection fails the page allocation. */
  #allocTableOrFail(): number {
    const f = this.#fault;
    if (f?.armed === true && f.shouldFail(N * 8)) return -1;
    return this.#allocTable();
  }

  #allocTable(): number {
    const reused = this.#free.pop();
    if (reused !== undefined) return reused;
    if (this.#nextTable === this.#tablesCapacity) this.#grow();
    return this.#nextTable++;
  }

  /**
   * Room for one more table: the first chunk doubles (a copy) until it is full-size; after that a new
   * zeroed chunk is appended and nothing is copied. Only the small `used` counts still double.
   */
  #grow(): void {
    const chunkTables = 1 << this.#chunkShift;
    const first = this.#chunks[0] ?? this.#noChunk;
    if (this.#tablesCapacity < chunkTables) {
      const grown = new Float64Array(Math.min(chunkTables, this.#tablesCapacity * 2) * N);
      grown.set(first);
      this.#chunks[0] = grown;
      this.#tablesCapacity = grown.length / N;
      // The walk cache may hold the old first chunk.
      this.#forget();
    } else {
      this.#chunks.push(new Float64Array(chunkTables * N));
      this.#tablesCapacity += chunkTables;
    }
    if (this.#used.length < this.#tablesCapacity) {
      const n = Math.max(this.#tablesCapacity, this.#used.length * 2);
      const used = new Uint16Array(n);
      used.set(this.#used);
      this.#used = used;
      const level = new Uint8Array(n);
      level.set(this.#tableLevel);
      this.#tableLevel = level;
      const base = new Float64Array(n);
      base.set(this.#tableBase);
      this.#tableBase = base;
    }
  }
}

/** `iova` is an integer in [0, lastIova] and a multiple of the leaf size of `level` (at most 1 GiB). */
function leafIovaOk(iova: number, level: number, lastIova: number): boolean {
  // Number.isInteger first: also false for NaN and the infinities. The alignment test reads the low 32
  // bits, which `>>> 0` keeps exactly for any integer, instead of a floating-point remainder.
  return Number.isInteger(iova) && iova >= 0 && iova <= lastIova && ((iova >>> 0) & ((LEVEL_SIZE[level] ?? 1) - 1)) === 0;
}
