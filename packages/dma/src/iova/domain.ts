import { type FaultAttr, type Trace } from "@dmasim/trace";
import { Counter } from "../counters.js";
import { FAIL_IOVA, IOVA_ANCHOR, IOVA_RANGE_CACHE_MAX_SIZE } from "./constants.js";
import { checkCount, checkCpu, IovaError } from "./errors.js";
import { IovaRcache, type IovaMagazine } from "./rcache.js";
import { IovaRangeBlocks } from "./range-blocks.js";

// Module-local copies of the counter indices alloc_iova_fast and free_iova_fast add to: `Counter.X` is
// two loads in the bytecode, and the bytecode size of the map path is what V8's inlining budget counts
// (with the checks below out of line: allocIovaFast 312 → 284 bytes, freeIovaFast 195 → 171; the
// pair's figure is at checkMapPhysArgs in mapping.ts).
const C_ALLOC_CACHE = Counter.IovaAllocCache;
const C_ALLOC_FAIL = Counter.IovaAllocFail;
const C_FREE_CACHE = Counter.IovaFreeCache;

/** The precise checks of alloc_iova_fast and free_iova_fast (two counts and a CPU), in order; out of their bytecode. */
function checkFastArgs(aName: string, a: number, aMin: number, bName: string, b: number, bMin: number, cpu: number, cpus: number): void {
  checkCount(aName, a, aMin);
  checkCount(bName, b, bMin);
  checkCpu(cpu, cpus);
}

/** The test checkCount makes, without the throw: the cheap first look of the fast paths. */
function isCount(v: number, min: number): boolean {
  return Number.isSafeInteger(v) && v >= min;
}

/** The test checkCpu makes, without the throw. */
function isCpu(cpu: number, cpus: number): boolean {
  return Number.isInteger(cpu) && cpu >= 0 && cpu < cpus;
}

/** struct iova: an allocated range of PFNs, both ends inclusive. */
export interface IovaRange {
  /** First PFN of the range (in units of the domain's granule). */
  readonly pfnLo: number;
  /** Last PFN of the range, inclusive. */
  readonly pfnHi: number;
}

export interface IovaDomainOptions {
  /** Smallest IOMMU page size in bytes: a power of two, at most 4096 (as init_iova_domain insists). */
  readonly granule: number;
  /** Lowest PFN handed out; at least 1 so that PFN 0 can mean failure, as alloc_iova_fast returns it. */
  readonly startPfn: number;
  /** CPUs with their own range caches (default 1). */
  readonly cpus?: number;
}

/** fls_long(n - 1): the order of the next power of two of n (order_base_2). */
export function orderBase2(n: number): number {
  if (n <= 0x8000_0000) return n <= 1 ? 0 : 32 - Math.clz32(n - 1);
  let order = 31;
  while (2 ** order < n) order++;
  return order;
}

/**
 * struct iova_domain (drivers/iommu/iova.c): the tree of allocated ranges with upstream's cached
 * nodes and max32_alloc_size, and the per-CPU range caches in front of it.
 */
export class IovaDomain {
  /** Smallest IOMMU page size in bytes: one PFN of this domain. */
  readonly granule: number;
  /** Lowest PFN the domain hands out; at least 1, since PFN 0 means failure. */
  readonly startPfn: number;
  /** CPUs with their own range caches (rcache magazines). */
  readonly cpus: number;
  /** dma_32bit_pfn: the first PFN at 4 GiB. */
  readonly dma32bitPfn: number;
  /** The platform's counters and fault sites (IOVA cache hits, tree allocations). */
  readonly trace: Trace;
  /** The fail_iova fault-injection site, tested by iommu_dma_alloc_iova. */
  readonly failAlloc: FaultAttr;
  readonly #tree = new IovaRangeBlocks();
  readonly #rcaches: IovaRcache[] = [];
  // cached_node and cached32_node, held as the range they point at (pfn_lo, pfn_hi): ranges never
  // overlap, so pfn_lo names one; the anchor is [IOVA_ANCHOR, IOVA_ANCHOR].
  #cachedLo = IOVA_ANCHOR;
  #cachedHi = IOVA_ANCHOR;
  #cached32Lo = IOVA_ANCHOR;
  #cached32Hi = IOVA_ANCHOR;
  #max32AllocSize: number;

  constructor(trace: Trace, options: IovaDomainOptions) {
    trace.counters.declare(Counter);
    const { granule, startPfn } = options;
    const cpus = options.cpus ?? 1;
    if (!Number.isSafeInteger(granule) || granule < 1 || granule > 4096 || (granule & (granule - 1)) !== 0) {
      throw new IovaError("granule", granule, "a power of two between 1 and 4096 bytes");
    }
    checkCount("startPfn", startPfn, 1);
    if (!Number.isInteger(cpus) || cpus < 1 || cpus > 4096) {
      throw new IovaError("cpus", cpus, "an integer number of CPUs between 1 and 4096");
    }
    this.trace = trace;
    this.failAlloc = trace.faults.attr(FAIL_IOVA);
    this.granule = granule;
    this.startPfn = startPfn;
    this.cpus = cpus;
    this.dma32bitPfn = 2 ** 32 / granule;
    this.#max32AllocSize = this.dma32bitPfn;
    const freePfns = (mag: IovaMagazine): void => {
      this.#freeMagazine(mag);
    };
    for (let i = 0; i < IOVA_RANGE_CACHE_MAX_SIZE; i++) this.#rcaches.push(new IovaRcache(cpus, trace.clock, freePfns));
  }

  /** iova_shift: log2(granule). */
  get shift(): number {
    return Math.log2(this.granule);
  }

  /** Ranges in the tree (those held by range caches included: upstream keeps them allocated too). */
  get liveRanges(): number {
    return this.#tree.size;
  }

  /** max32_alloc_size: sizes at least this large fail at once below 4 GiB, until a range there is freed. */
  get max32AllocSize(): number {
    return this.#max32AllocSize;
  }

  /** Levels a lookup descends (the block index, then a block), for benchmarks and tests of the O(log n) claim. */
  get treeHeight(): number {
    return this.#tree.height;
  }

  /**
   * alloc_iova: a range of `size` PFNs ending at or below `limitPfn`, found top-down as upstream does
   * (from the cached node, then once more between it and the limit); `sizeAligned` aligns pfn_lo to
   * the next power of two of `size`. Undefined when no space.
   */
  allocIova(size: number, limitPfn: number, sizeAligned: boolean): IovaRange | undefined {
    checkCount("size", size, 1);
    checkCount("limitPfn", limitPfn, 0);
    const pfn = this.#allocTree(size, limitPfn, sizeAligned);
    if (pfn < 0) {
      this.trace.counters.add(Counter.IovaAllocFail);
      return undefined;
    }
    return { pfnLo: pfn, pfnHi: pfn + size - 1 };
  }

  /** find_iova: the range holding `pfn`, or undefined. */
  findIova(pfn: number): IovaRange | undefined {
    checkCount("pfn", pfn, 0);
    const lo = this.#tree.find(pfn);
    if (lo < 0 || lo === IOVA_ANCHOR) return undefined;
    return { pfnLo: lo, pfnHi: this.#tree.foundHi };
  }

  /** free_iova: frees the range holding `pfn`; false (and nothing done) when no range holds it. */
  freeIova(pfn: number): boolean {
    checkCount("pfn", pfn, 0);
    const lo = this.#tree.find(pfn);
    if (lo < 0 || lo === IOVA_ANCHOR) return false;
    this.#removeNode(lo, this.#tree.foundHi);
    return true;
  }

  /**
   * reserve_iova: makes [pfnLo, pfnHi] unavailable to allocation. Parts already allocated stay as they
   * are; each free stretch inside becomes a new range. Returns how many ranges were added.
   */
  reserveIova(pfnLo: number, pfnHi: number): number {
    checkCount("pfnLo", pfnLo, 0);
    checkCount("pfnHi", pfnHi, 0);
    if (pfnHi < pfnLo) throw new IovaError("pfnHi", pfnHi, `a PFN >= pfnLo (${pfnLo})`);
    const tree = this.#tree;
    let added = 0;
    let at = pfnLo;
    while (at <= pfnHi) {
      // The first range ending at or above `at`: the free stretch below it starts at its gapStart.
      const lo = tree.ceilingByHi(at);
      if (lo <= at) {
        at = tree.foundHi + 1;
        continue;
      }
      const end = Math.min(pfnHi, lo - 1);
      tree.insert(at, end);
      added++;
      at = lo;
    }
    return added;
  }

  /**
   * alloc_iova_fast: sizes below 32 granules are rounded up to a power of two so a freed range always
   * fits its cache; the per-CPU cache is tried first, then the tree, and on failure with
   * `flushRcache` every cached range goes back to the tree and the tree is tried once more.
   * Returns pfn_lo, or 0 on failure.
   */
  allocIovaFast(size: number, limitPfn: number, flushRcache: boolean, cpu: number): number {
    if (!(isCount(size, 1) && isCount(limitPfn, 0) && isCpu(cpu, this.cpus))) checkFastArgs("size", size, 1, "limitPfn", limitPfn, 0, cpu, this.cpus);
    const counters = this.trace.counters;
    const order = orderBase2(size);
    if (order < IOVA_RANGE_CACHE_MAX_SIZE) {
      // Below 32 granules the size is rounded up to its power of two; 32 itself already is one.
      size = 1 << order;
      const rcache = this.#rcaches[order];
      const pfn = rcache === undefined ? 0 : rcache.get(limitPfn + 1 - size, cpu);
      if (pfn !== 0) {
        counters.add(C_ALLOC_CACHE);
        return pfn;
      }
    }
    let pfn = this.#allocTree(size, limitPfn, true);
    if (pfn < 0 && flushRcache) {
      this.flushRcaches();
      pfn = this.#allocTree(size, limitPfn, true);
    }
    if (pfn < 0) {
      counters.add(C_ALLOC_FAIL);
      return 0;
    }
    return pfn;
  }

  /** free_iova_fast: into the range cache of the size's order, else back to the tree. */
  freeIovaFast(pfn: number, size: number, cpu: number): void {
    if (!(isCount(pfn, 1) && isCount(size, 1) && isCpu(cpu, this.cpus))) checkFastArgs("pfn", pfn, 1, "size", size, 1, cpu, this.cpus);
    const order = orderBase2(size);
    const rcache = order < IOVA_RANGE_CACHE_MAX_SIZE ? this.#rcaches[order] : undefined;
    if (rcache !== undefined) {
      rcache.insert(pfn, cpu);
      this.trace.counters.add(C_FREE_CACHE);
      return;
    }
    this.freeIova(pfn);
  }

  /** Every cached range of every CPU and of the depots back to the tree (the alloc_iova_fast retry). */
  flushRcaches(): void {
    for (let cpu = 0; cpu < this.cpus; cpu++) this.freeCpuCachedIovas(cpu);
    this.freeGlobalCachedIovas();
    this.trace.counters.add(Counter.IovaCacheFlushes);
  }

  /** free_cpu_cached_iovas. */
  freeCpuCachedIovas(cpu: number): void {
    checkCpu(cpu, this.cpus);
    for (const r of this.#rcaches) r.freeCpu(cpu);
  }

  /** free_global_cached_iovas. */
  freeGlobalCachedIovas(): void {
    for (const r of this.#rcaches) r.freeDepot();
  }

  /** PFNs held in the range cache of `order` (all CPUs and the depot). */
  cachedPfns(order: number): number {
    const r = this.#rcaches[order];
    if (r === undefined) throw new IovaError("order", order, `an order in [0, ${IOVA_RANGE_CACHE_MAX_SIZE - 1}]`);
    let n = 0;
    for (let cpu = 0; cpu < this.cpus; cpu++) n += r.cpuCount(cpu);
    for (const mag of r.depot) n += mag.size;
    return n;
  }

  /** Full magazines in the depot of `order`. */
  depotSize(order: number): number {
    const r = this.#rcaches[order];
    if (r === undefined) throw new IovaError("order", order, `an order in [0, ${IOVA_RANGE_CACHE_MAX_SIZE - 1}]`);
    return r.depot.length;
  }

  /** Every range in address order (reserved and cached ones included). */
  ranges(): IovaRange[] {
    const out: IovaRange[] = [];
    this.#tree.forEach((pfnLo, pfnHi) => out.push({ pfnLo, pfnHi }));
    return out;
  }

  /** Structural self-check of the tree, for tests: "" when sound. */
  checkTree(): string {
    return this.#tree.check();
  }

  /** put_iova_domain: drops the caches, their timers and every range. */
  putIovaDomain(): void {
    for (const r of this.#rcaches) {
      r.cancelWork();
      r.depot.length = 0;
      for (let cpu = 0; cpu < this.cpus; cpu++) {
        const l = r.loaded[cpu];
        const p = r.prev[cpu];
        if (l !== undefined) l.size = 0;
        if (p !== undefined) p.size = 0;
      }
    }
    this.#tree.clear();
    this.#cachedLo = IOVA_ANCHOR;
    this.#cachedHi = IOVA_ANCHOR;
    this.#cached32Lo = IOVA_ANCHOR;
    this.#cached32Hi = IOVA_ANCHOR;
    this.#max32AllocSize = this.dma32bitPfn;
  }

  /**
   * __alloc_and_insert_iova_range. Upstream walks backwards from the cached node (cached32_node for
   * limits at or below 4 GiB) and takes the first gap that fits, i.e. the highest fit below
   * min(limit, cached pfn_lo); failing that it retries once between the cached node's pfn_hi and the
   * limit. Each pass is one highest-fit query here, so the addresses are upstream's.
   */
  #allocTree(size: number, limitPfn: number, sizeAligned: boolean): number {
    const limit = limitPfn + 1;
    const tree = this.#tree;
    if (limit <= this.dma32bitPfn && size >= this.#max32AllocSize) return -1;
    const order = sizeAligned ? orderBase2(size) : 0;
    const below32 = limit <= this.dma32bitPfn;
    const cachedLo = below32 ? this.#cached32Lo : this.#cachedLo;
    const retryPfn = below32 ? this.#cached32Hi : this.#cachedHi;
    let pfn = tree.highestFit(size, order, this.startPfn, Math.min(limit, cachedLo));
    if (pfn < 0 && retryPfn < limit) pfn = tree.highestFit(size, order, retryPfn + 1, limit);
    if (pfn < 0) {
      // Upstream records the failed size whatever the limit was.
      this.#max32AllocSize = size;
      return -1;
    }
    const hi = pfn + size - 1;
    tree.insert(pfn, hi);
    if (hi < this.dma32bitPfn) {
      this.#cached32Lo = pfn;
      this.#cached32Hi = hi;
    } else {
      this.#cachedLo = pfn;
      this.#cachedHi = hi;
    }
    this.trace.counters.add(Counter.IovaAllocTree);
    return pfn;
  }

  /** remove_iova with __cached_rbnode_delete_update: a cached node at or above the freed range moves to its successor. */
  #removeNode(lo: number, hi: number): void {
    const tree = this.#tree;
    tree.remove(lo);
    const c32 = this.#cached32Lo;
    if (lo === c32 || (hi < this.dma32bitPfn && lo >= c32)) {
      this.#cached32Lo = tree.nextLo;
      this.#cached32Hi = tree.nextHi;
    }
    if (lo < this.dma32bitPfn) this.#max32AllocSize = this.dma32bitPfn;
    if (lo >= this.#cachedLo) {
      this.#cachedLo = tree.nextLo;
      this.#cachedHi = tree.nextHi;
    }
    this.trace.counters.add(Counter.IovaFreeTree);
  }

  /** iova_magazine_free_pfns. */
  #freeMagazine(mag: IovaMagazine): void {
    for (let i = 0; i < mag.size; i++) {
      const lo = this.#tree.find(mag.pfns[i] ?? 0);
      if (lo >= 0 && lo !== IOVA_ANCHOR) this.#removeNode(lo, this.#tree.foundHi);
    }
    mag.size = 0;
  }
}
