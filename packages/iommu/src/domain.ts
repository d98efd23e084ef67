import { type Counters, type EventStream, type Trace } from "@dmasim/trace";
import { counterValues } from "@dmasim/trace/internal";
import { Counter } from "./counters.js";
import { hex } from "@dmasim/trace";
import type { IommuEvent } from "./events.js";
import type { PhysAddr } from "@dmasim/memory";
import { IommuError, IommuInputError } from "./errors.js";
import type { Iova } from "./iova.js";
import type { Iotlb, IotlbHeld } from "./iotlb.js";
import { IoPageTable } from "./page-table.js";
import type { IommuIotlbGather } from "./gather.js";
import {
  domainPageTable,
  domainReleased,
  iotlbGatherDetach,
  iotlbSync,
  mapGranuleNoPhysProtCheck,
  newIommuDomain,
  unmapFast,
} from "./internal-keys.js";
import { IOMMU_PROT_MASK, IommuProt } from "./prot.js";
import * as pte from "./pte.js";
import { checkAddress, checkAligned, checkSize } from "./validate.js";

/** IOMMU_DOMAIN_BLOCKED, IOMMU_DOMAIN_IDENTITY, IOMMU_DOMAIN_UNMANAGED/DMA (a paging domain). */
export type DomainType = "blocked" | "identity" | "paging";

/** Detached page-table pages: an opaque handle, like the iommu_iotlb_gather freelist. */
export interface PtPageList {
  /** Page-table pages in the list (4 KiB each). */
  readonly count: number;
}

/**
 * The fault-injection site of IO page-table page allocation (`trace.faults.attr(FAIL_IO_PGTABLE)`): a
 * map that needs a new table then fails with ENOMEM after unmapping what it had mapped, as iommu_map
 * does when iommu_alloc_pages_node fails under it.
 */
export const FAIL_IO_PGTABLE = "fail_io_pgtable";

/** Highest physical address (exclusive) a PTE can hold: 52 bits, the widest any IOMMU format has. */
export const MAX_PHYS = 2 ** 52;

// Module-local copies of what the small-call fast paths read. Kept for a figure: reading the imports
// instead made dma_map_phys + dma_unmap_phys 12-25 % slower and the two-step batch 4-9 % (dma.bench.ts
// cases as native modules, base and variant interleaved in one process, 16 rounds, several runs).
const C_MAP_CALLS = Counter.IommuMapCalls;
const C_UNMAP_CALLS = Counter.IommuUnmapCalls;
const C_PTE_WRITES = Counter.PteWrites;
const C_PTE_CLEARS = Counter.PteClears;
const C_PT_ALLOCATED = Counter.PtPagesAllocated;
const C_PT_FREED = Counter.PtPagesFreed;
const C_SYNC_MAP = Counter.IotlbSyncMap;
const C_INVAL_RANGE = Counter.IotlbInvalRange;
const PROT_MASK = IOMMU_PROT_MASK;
const PROT_RW = IommuProt.READ | IommuProt.WRITE;
const LEVEL_SIZE = pte.LEVEL_SIZE;
const PTE_LEAF_FLAGS = pte.PTE_VALID + pte.PTE_LEAF;
const PTE_PENDING = pte.PTE_PENDING;
const PTE_PROT_UNIT = pte.PTE_PROT_UNIT;
const pteAddr = pte.pteAddr;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
// The key of the single-granule map that `map` calls, as a module-local copy: an imported binding costs a
// load through the module's cell on every call (9 % of the DMA layer's two-step batch, see dma's
// two-step-fast.ts).
const MAP_GRANULE_NO_PHYS_PROT_CHECK: typeof mapGranuleNoPhysProtCheck = mapGranuleNoPhysProtCheck;

/** The detached tables of an unmap that detached none; never written. */
const NO_TABLES: readonly number[] = Object.freeze([]);

class PendingPtPages implements PtPageList {
  released = false;
  constructor(
    readonly domain: IommuDomain,
    readonly tables: readonly number[],
  ) {}
  get count(): number {
    return this.tables.length;
  }
}

/**
 * The unit a domain belongs to, as the domain sees it: `Iommu` satisfies it. Declared here so that
 * domain.ts does not import iommu.ts, which imports domain.ts.
 */
export interface IommuUnit {
  /** The unit's name, as events and messages show it. */
  readonly name: string;
  /** Input address width of the unit's page tables (the domain's aperture end is 2^vaBits - 1). */
  readonly vaBits: number;
}

/** What a domain needs from its unit; built by Iommu. */
export interface DomainContext {
  readonly trace: Trace;
  readonly iotlb: Iotlb;
  readonly unit: string;
  readonly levels: number;
  readonly pgsizeBitmap: number;
  readonly granule: number;
  readonly vaLimit: number;
  readonly requiresSyncMap: boolean;
}

/** What one `map` call did: for the caller's accounting and for tests of page-table cost. */
export interface MapResult {
  /** Bytes mapped (the whole request: a map succeeds whole or throws). */
  readonly mapped: number;
  /** Leaf PTEs written (one per leaf, whatever its size). */
  readonly ptesWritten: number;
  /** Page-table pages (4 KiB) allocated for the new leaves. */
  readonly ptPagesAllocated: number;
}

/** What one `unmap` call did. */
export interface UnmapResult {
  /** Bytes unmapped: the leaves found inside the range (0 for a hole). */
  readonly unmapped: number;
  /** Page-table pages the unmap detached; pass them to `releasePtPages` after the IOTLB invalidation. */
  readonly freed: PtPageList;
}

/**
 * struct iommu_domain. A paging domain owns an IO page table; blocked and identity domains own none.
 * Map and unmap only write PTEs: IOTLB maintenance (iotlb_sync_map, range or domain invalidation) is
 * the caller's separate step, as in the kernel, so the cost and the windows of each choice are visible.
 */
export class IommuDomain {
  /** Domain id, unique on its unit from 1 on, never reused; tags the domain's IOTLB entries. */
  readonly id: number;
  /** Blocked, identity or paging. */
  readonly type: DomainType;
  /** The unit that allocated the domain. */
  readonly iommu: IommuUnit;
  /**
   * The page table of a paging domain (undefined for blocked and identity), for Iommu.translate and
   * dmasim's tools; its key is exported by `@dmasim/iommu/internal` only.
   */
  readonly [domainPageTable]: IoPageTable | undefined;
  /** The same page table, for this class's own paths. */
  readonly #pageTable: IoPageTable | undefined;
  readonly #ctx: DomainContext;
  // Flattened from #ctx for the small-call fast paths (one load instead of a chain).
  readonly #counters: Counters;
  /** The counters' array (`@dmasim/trace/internal`): the single-granule paths add to it directly (the same array for good). */
  readonly #counterValues: Float64Array;
  readonly #events: EventStream;
  readonly #iotlb: Iotlb;
  /**
   * Whether the IOTLB holds entries of this domain or the trace's events are active: one field the IOTLB
   * keeps, read by the single-granule unmaps.
   */
  readonly #iotlbHeld: IotlbHeld;
  readonly #granule: number;
  /** Level of a granule-sized leaf (1 for 4 KiB). */
  readonly #granuleLevel: number;
  readonly #vaLimit: number;
  /** The highest IOVA and physical address a single-granule map may start at (vaLimit, MAX_PHYS - granule). */
  readonly #lastIova: number;
  readonly #lastPhys: number;
  /** PTE flag bits every leaf of this domain carries besides prot: valid, leaf, pending if required. */
  readonly #leafFlags: number;
  #mappedBytes = 0;
  /**
   * Single-granule maps made by mapGranuleNoPhysProtCheck whose accounting is deferred: the map call, the PTE
   * write and the bytes are added to the counters and to mappedBytes when somebody reads them (see
   * Counters.deferIncrements; percpu_counter works the same way). A link then updates one field instead
   * of three, which is a fifth of its cost.
   */
  #granuleMaps = 0;
  /**
   * Single-granule unmaps, and those of them that found a hole (cleared nothing; the others cleared one
   * granule each), whose accounting is deferred the same way: the unmap calls, the PTE clears and the
   * bytes reach the counters and mappedBytes when read. Counting the rare holes rather than the bytes
   * cleared keeps the common unmap to one small-integer increment (a byte total is a double field).
   */
  #granuleUnmaps = 0;
  #granuleUnmapHoles = 0;
  readonly #stopDeferring: () => void;
  /** What a single-granule map that linked no table returns: shared, frozen, as the values never differ. */
  readonly #granuleMapped: MapResult;

  /** Makes a domain for `Iommu.allocDomain` (the key is exported by `@dmasim/iommu/internal` only). */
  static [newIommuDomain](iommu: IommuUnit, id: number, type: DomainType, ctx: DomainContext): IommuDomain {
    return new IommuDomain(iommu, id, type, ctx);
  }

  /** Use `Iommu.allocDomain`. */
  private constructor(iommu: IommuUnit, id: number, type: DomainType, ctx: DomainContext) {
    ctx.trace.counters.declare(Counter);
    this.iommu = iommu;
    this.id = id;
    this.type = type;
    this.#ctx = ctx;
    this.#pageTable = type === "paging" ? new IoPageTable(ctx.levels, ctx.pgsizeBitmap, undefined, ctx.trace.faults.attr(FAIL_IO_PGTABLE)) : undefined;
    this[domainPageTable] = this.#pageTable;
    this.#counters = ctx.trace.counters;
    this.#counterValues = ctx.trace.counters[counterValues];
    this.#events = ctx.trace.events;
    this.#iotlb = ctx.iotlb;
    this.#iotlbHeld = ctx.iotlb.heldFlag(id);
    this.#granule = ctx.granule;
    this.#granuleLevel = Math.max(1, LEVEL_SIZE.indexOf(ctx.granule));
    this.#vaLimit = ctx.vaLimit;
    this.#lastIova = ctx.vaLimit - ctx.granule;
    this.#lastPhys = MAX_PHYS - ctx.granule;
    this.#granuleMapped = Object.freeze({ mapped: ctx.granule, ptesWritten: 1, ptPagesAllocated: 0 });
    this.#leafFlags = PTE_LEAF_FLAGS + (ctx.requiresSyncMap ? PTE_PENDING : 0);
    // Byte totals pass 2^30 (a small integer's limit) sooner or later: doubles from birth, so that the
    // representation change cannot deprecate the hidden class of every domain made before it (see
    // IoPageTable's constructor).
    this.#mappedBytes = 0.5;
    this.#mappedBytes = 0;
    this.#stopDeferring =
      this.#pageTable === undefined
        ? () => undefined
        : this.#counters.deferIncrements(() => {
            this.#foldGranuleMaps();
          });
  }

  /** Bytes of IOVA space currently mapped by the page table. */
  get mappedBytes(): number {
    this.#foldGranuleMaps();
    return this.#mappedBytes;
  }

  /** Page-table pages held (root included), counting detached pages not yet released. */
  get ptPages(): number {
    return this.#pageTable?.tables ?? 0;
  }

  /** Detached page-table pages waiting for releasePtPages. */
  get ptPagesPending(): number {
    return this.#pageTable?.pendingFree ?? 0;
  }

  /** Memory the page table occupies on the modelled machine: 4 KiB per table. */
  get ptBytes(): number {
    return this.ptPages * 4096;
  }

  #paging(op: string): IoPageTable {
    if (this.#pageTable === undefined) {
      throw new IommuError("EINVAL", `${op} on domain ${this.id}: a ${this.type} domain has no page table (use a paging domain)`);
    }
    return this.#pageTable;
  }

  #checkRange(op: string, iova: number, size: number): void {
    checkAddress("iova", iova);
    checkSize("size", size);
    const g = this.#ctx.granule;
    checkAligned("iova", iova, g);
    checkAligned("size", size, g);
    if (iova + size > this.#ctx.vaLimit) {
      throw new IommuError(
        "EINVAL",
        `${op}: iova range [${hex(iova)}, ${hex(iova + size)}) goes beyond the ${Math.log2(this.#ctx.vaLimit)}-bit IOVA space`,
      );
    }
  }

  /**
   * iommu_map: maps [iova, iova+size) to [phys, phys+size) with the largest leaves alignment and
   * pgsizeBitmap allow. Nothing is written unless the whole call can succeed. When a page-table page
   * cannot be allocated (fault injection), the part already mapped is unmapped and invalidated and an
   * IommuError with code ENOMEM is thrown: iommu_map's unwinding after __iommu_map returns -ENOMEM.
   */
  map(iova: Iova, phys: PhysAddr, size: number, prot: number): MapResult {
    // Fast path: one granule with arguments that pass every check below (each test here implies the
    // corresponding check; anything else, including an occupied slot, goes the general way, which
    // throws the precise error). Alignment is tested on the low 32 bits (the granule is at most 1 GiB;
    // `>>> 0` keeps the low bits of any integer exactly) after an integer test: a floating-point `%` is
    // a library call, and phys is rarely a small integer.
    const g = this.#granule;
    if (
      size === g &&
      typeof phys === "number" &&
      phys >= 0 &&
      phys === Math.floor(phys) &&
      ((phys >>> 0) & (g - 1)) === 0 &&
      prot === (prot & PROT_MASK) &&
      (prot & PROT_RW) !== 0
    ) {
      const allocated = this[MAP_GRANULE_NO_PHYS_PROT_CHECK](iova, phys, prot);
      // The common case returns the domain's one frozen result. Kept for a figure: with a fresh object
      // here, a caller's loop ran 12-14 ns a map when V8 ran its on-stack-replacement code (which drops
      // the object) and 50-95 ns when it later swapped in a whole-function compile (which kept it: about
      // 80 B and a call's worth of work per map), which happened in 4 processes of 5 (pnpm bench:vs-c,
      // base and branch interleaved, 5 runs each: 5-6x C against 1.2x C in every run now).
      if (allocated === 0) return this.#granuleMapped;
      if (allocated > 0) return { mapped: g, ptesWritten: 1, ptPagesAllocated: allocated };
    }
    return this.#mapSlow(iova, phys, size, prot);
  }

  /**
   * The DMA layer's per-page link path, not part of the public API (the key is exported by
   * `@dmasim/iommu/internal` only): map exactly one granule
   * at `iova` to `phys` when the caller has already established what `map` checks about phys and prot
   * (phys a safe integer >= 0 aligned to the granule; prot valid IommuProt bits with READ and/or
   * WRITE). Everything else is checked here as `map` checks it (iova in full, phys below the 52-bit
   * limit, a free slot). Returns the number of page-table pages allocated (0 or more) after mapping,
   * counted and traced exactly as `map` of one granule; -1 with nothing changed when the call is not
   * that simple case, and the caller then calls `map`, which takes the general path or throws the
   * precise error. No result object, no exception: the cheapest way to write one PTE.
   */
  [mapGranuleNoPhysProtCheck](iova: number, phys: number, prot: number): number {
    // One body for both callers (map inlines it) and kept small, so that the DMA layer's link, inlined
    // into its caller's loop, can inline it too: a call there would also box the IOVA (above 2^31, so not
    // a small integer) on every page. One walk checks the slot is free and writes it (none when the
    // leaf table is cached).
    const pt = this.#pageTable;
    // The rest of the IOVA's checks (an integer multiple of the granule, at most #lastIova) are made by
    // mapLeafCached, where a hit in the walk cache answers them with one comparison, or else by mapLeaf.
    if (pt === undefined || typeof iova !== "number" || phys > this.#lastPhys) return -1;
    // The walk-cache hit, untraced, is the whole of the usual call; everything else is one call out of
    // line (see IoPageTable.mapLeafCached for why the IOVA must not reach a second call site here).
    if (!this.#events.active) {
      const r = pt.mapLeafCached(iova, this.#granuleLevel, phys + this.#leafFlags + prot * PTE_PROT_UNIT);
      if (r === 0) {
        this.#granuleMaps++;
        return 0;
      }
      if (r === -1) return -1;
    }
    return this.#mapGranuleUncached(pt, iova, phys, prot);
  }

  /** The single-granule map past the walk cache or with a listener: the walk, its accounting, the events. */
  #mapGranuleUncached(pt: IoPageTable, iova: number, phys: number, prot: number): number {
    const allocated = pt.mapLeaf(iova, this.#granuleLevel, phys + this.#leafFlags + prot * PTE_PROT_UNIT, this.#lastIova);
    if (allocated < 0) return -1;
    this.#granuleMaps++;
    if (allocated !== 0 || this.#events.active) this.#mapGranuleRare(iova, phys, prot, allocated);
    return allocated;
  }

  /** Adds the deferred single-granule maps and unmaps to the counters and to mappedBytes. */
  #foldGranuleMaps(): void {
    const n = this.#granuleMaps;
    const u = this.#granuleUnmaps;
    if (n === 0 && u === 0) return;
    const cleared = u - this.#granuleUnmapHoles;
    this.#granuleMaps = 0;
    this.#granuleUnmaps = 0;
    this.#granuleUnmapHoles = 0;
    this.#mappedBytes += (n - cleared) * this.#granule;
    const v = this.#counterValues;
    v[C_MAP_CALLS] = (v[C_MAP_CALLS] ?? 0) + n;
    v[C_PTE_WRITES] = (v[C_PTE_WRITES] ?? 0) + n;
    v[C_UNMAP_CALLS] = (v[C_UNMAP_CALLS] ?? 0) + u;
    v[C_PTE_CLEARS] = (v[C_PTE_CLEARS] ?? 0) + cleared;
  }

  /** Iommu.freeDomain: settle the deferred accounting for good (the key is in `@dmasim/iommu/internal`). */
  [domainReleased](): void {
    this.#foldGranuleMaps();
    this.#stopDeferring();
    this.#iotlb.releaseHeldFlag(this.id);
  }

  /** The rest of a single-granule map's accounting, when it allocated tables or someone listens. */
  #mapGranuleRare(iova: number, phys: number, prot: number, allocated: number): void {
    if (allocated !== 0) this.#counters.add(C_PT_ALLOCATED, allocated);
    if (this.#events.active) {
      // mapLeaf links fresh tables top-down, from the first empty entry to the leaf's own table: the
      // tables of levels granuleLevel + allocated - 1 down to granuleLevel, each covering iova's span.
      for (let l = this.#granuleLevel + allocated - 1; l >= this.#granuleLevel; l--) {
        const span = LEVEL_SIZE[l + 1] ?? 0;
        this.#emitPt("iommu.pt-alloc", l, Math.floor(iova / span) * span);
      }
      this.#emitMapRun(iova, phys, this.#granule, prot, this.#granule);
    }
  }

  #emitMapRun(iova: number, phys: number, size: number, prot: number, pgsize: number): void {
    const trace = this.#ctx.trace;
    trace.events.emit<IommuEvent>({ type: "iommu.map", t: trace.clock.now, unit: this.#ctx.unit, domain: this.id, iova: iova as Iova, phys: phys as PhysAddr, size, prot, pgsize });
  }

  /** One `iommu.map` event per run of equal leaves, chosen as IoPageTable.map chooses them. */
  #emitMap(pt: IoPageTable, iova: number, phys: number, size: number, prot: number): void {
    let va = iova;
    let pa = phys;
    let left = size;
    let runStart = va;
    let runPhys = pa;
    let runSize = 0;
    let runLevel = -1;
    while (left > 0) {
      const lvl = pt.pickLevel(va, pa, left);
      const esz = LEVEL_SIZE[lvl] ?? this.#granule;
      if (lvl !== runLevel && runSize > 0) {
        this.#emitMapRun(runStart, runPhys, runSize, prot, LEVEL_SIZE[runLevel] ?? this.#granule);
        runSize = 0;
      }
      if (runSize === 0) {
        runStart = va;
        runPhys = pa;
        runLevel = lvl;
      }
      // As many leaves of this size as fit before the end of their table (what map writes in one go).
      const n = Math.max(1, Math.min(Math.floor(left / esz), 512 - (Math.floor(va / esz) % 512)));
      const bytes = n * esz;
      va += bytes;
      pa += bytes;
      left -= bytes;
      runSize += bytes;
    }
    if (runSize > 0) this.#emitMapRun(runStart, runPhys, runSize, prot, LEVEL_SIZE[runLevel] ?? this.#granule);
  }

  /** The page-table pages the last slow-path map linked and freed, as events. */
  #emitPtChanges(pt: IoPageTable): void {
    for (const t of pt.lastAllocatedTables) this.#emitPt("iommu.pt-alloc", pt.tableLevel(t), pt.tableBase(t));
    for (const t of pt.lastFreedTables) this.#emitPt("iommu.pt-free", pt.tableLevel(t), pt.tableBase(t));
  }

  #emitPt(type: "iommu.pt-alloc" | "iommu.pt-free", level: number, iova: number): void {
    const trace = this.#ctx.trace;
    trace.events.emit<IommuEvent>({ type, t: trace.clock.now, unit: this.#ctx.unit, domain: this.id, level, iova: iova as Iova });
  }

  #mapSlow(iova: number, phys: number, size: number, prot: number): MapResult {
    const pt = this.#paging("map");
    this.#checkRange("map", iova, size);
    checkAddress("phys", phys);
    checkAligned("phys", phys, this.#ctx.granule);
    if (phys + size > MAX_PHYS) {
      throw new IommuError("ERANGE", `map: phys range [${hex(phys)}, ${hex(phys + size)}) is beyond the 52-bit physical address space`);
    }
    if (!Number.isInteger(prot) || prot < 0 || prot > IOMMU_PROT_MASK || (prot & ~IOMMU_PROT_MASK) !== 0) {
      throw new IommuInputError("map", "prot", prot, "IommuProt bits (READ|WRITE|CACHE|MMIO|PRIV)");
    }
    // As VT-d's __domain_mapping: a mapping no device may read nor write is a caller bug.
    if ((prot & (IommuProt.READ | IommuProt.WRITE)) === 0) {
      throw new IommuInputError("map", "prot", prot, "IommuProt.READ and/or IommuProt.WRITE");
    }
    if (pt.hasMapping(iova, iova + size)) {
      throw new IommuError("EEXIST", `map: iova range [${hex(iova)}, ${hex(iova + size)}) overlaps an existing mapping in domain ${this.id}`);
    }
    const done = pt.map(iova, phys, size, prot, this.#ctx.requiresSyncMap);
    if (done !== size) this.#unwindMap(pt, iova, phys, done, size, prot);
    this.#mappedBytes += size;
    this.#countMapCall(pt);
    if (this.#events.active) {
      this.#emitPtChanges(pt);
      this.#emitMap(pt, iova, phys, size, prot);
    }
    return { mapped: size, ptesWritten: pt.lastPtesWritten, ptPagesAllocated: pt.lastTablesAllocated };
  }

  /** The counters of one iommu_map call on the slow path, from what pt.map just wrote (whole or in part). */
  #countMapCall(pt: IoPageTable): void {
    const c = this.#ctx.trace.counters;
    c.add(Counter.IommuMapCalls);
    c.add(Counter.PteWrites, pt.lastPtesWritten);
    c.add(Counter.PtPagesAllocated, pt.lastTablesAllocated);
    const replaced = pt.lastTablesFreed;
    if (replaced !== 0) {
      // Empty tables a large leaf replaced: detached and freed in the same step, as the kernel does.
      c.add(Counter.PtPagesPendingFree, replaced);
      c.add(Counter.PtPagesFreed, replaced);
    }
  }

  /**
   * iommu_map's failure path: account for the part pt.map wrote (and the tables it linked), unmap it
   * with the IOTLB flushed and the detached tables freed (iommu_unmap), then report ENOMEM. Tables
   * linked on the way stay linked and empty, as in the kernel; later maps reuse them.
   */
  #unwindMap(pt: IoPageTable, iova: number, phys: number, done: number, size: number, prot: number): never {
    this.#countMapCall(pt);
    this.#mappedBytes += done;
    if (done > 0) {
      if (this.#events.active) {
        this.#emitPtChanges(pt);
        this.#emitMap(pt, iova, phys, done, prot);
      }
      const detached: number[] = [];
      this.#unmapSlow(iova, done, detached);
      this.invalidateRange(iova as Iova, done);
      this.#releaseTables(detached);
    }
    throw new IommuError(
      "ENOMEM",
      `map: iova range [${hex(iova)}, ${hex(iova + size)}) of domain ${this.id}: a page-table page could not be allocated after ${hex(done)} bytes (unmapped again)`,
    );
  }

  /**
   * iommu_unmap: clears whatever is mapped inside [iova, iova+size); a hole unmaps nothing. Unmapping
   * part of a 2 MiB or 1 GiB leaf is refused (EINVAL, nothing changed), as io-pgtable-arm.c does since
   * block splitting was removed ("Unmap of a partial large IOPTE is not allowed").
   * The IOTLB is not touched: entries for the range are only marked stale and keep translating until
   * invalidated. Page-table pages are detached only where the range covers the whole span of the entry
   * pointing to them (dma_pte_clear_level, __arm_lpae_unmap); a table emptied by partial clearing
   * stays linked and is reused. Detached pages come back in `freed` and stay allocated until
   * releasePtPages.
   */
  unmap(iova: Iova, size: number): UnmapResult {
    // Fast path: one granule, valid and aligned (unmapLeaf checks the IOVA beyond its type), not inside
    // a larger leaf (unmapLeaf returns -1 with nothing changed for anything else, and the general path
    // reports it). One leaf covers no table's span, so nothing is ever detached here.
    // The same steps as iommu_unmap_fast (domain[unmapFast]), with the result object the public API
    // returns. Written out in both (not a shared private method): one inlining level more made each call
    // about 1 ns slower in a caller's loop (7.0-7.6 against 7.6-8.6 ns, pnpm bench:vs-c interleaved).
    const pt = this.#pageTable;
    if (size === this.#granule && pt !== undefined && typeof iova === "number") {
      const unmapped = pt.unmapLeaf(iova, this.#granuleLevel, this.#lastIova);
      if (unmapped >= 0) {
        // Accounting deferred as for single-granule maps (#foldGranuleMaps); unmapped is 0 or g.
        this.#granuleUnmaps++;
        if (unmapped === 0) this.#granuleUnmapHoles++;
        // One test, one out-of-line call, for what a quiet unmap does not need (IOTLB, events). Kept for a
        // figure: with markStale's call made on every unmap, one call per page took 14.7 ns against 7.4
        // (CPU time, pnpm bench:vs-c, base and branch interleaved; C: 2.8 ns). One field for both (the
        // IOTLB folds the events' activity into it): unmap_fast 6.9 -> 6.6 ns against testing the IOTLB's
        // flag and events.active (CPU time, pnpm bench:vs-c 11, nine runs each interleaved, median of pairs 0.95).
        if (this.#iotlbHeld.busy !== 0) this.#unmapGranuleRare(iova, unmapped);
        return { unmapped, freed: new PendingPtPages(this, NO_TABLES) };
      }
    }
    const detached: number[] = [];
    const unmapped = this.#unmapSlow(iova, size, detached);
    return { unmapped, freed: new PendingPtPages(this, detached.length === 0 ? NO_TABLES : detached) };
  }

  /**
   * iommu_unmap_fast (drivers/iommu/iommu.c): clears [iova, iova+size) exactly as `unmap` does (same
   * checks, refusals, counters, events, IOTLB staleness), but returns only the bytes unmapped and adds
   * the range and the detached page-table pages to the caller's gather (iommu_iotlb_gather_add_range and
   * the driver's iommu_pages_list_add), for one `[iotlbSync]` (strict) or `[iotlbGatherDetach]` (the flush
   * queue, lazy) after one or more unmaps. No object is built. A gather holds one domain's work: one
   * that holds another domain's is refused (EINVAL) before anything changes. The key is exported by
   * `@dmasim/iommu/internal` only.
   */
  [unmapFast](iova: Iova, size: number, gather: IommuIotlbGather): number {
    if (gather.owner !== this) this.#adoptGather(gather, "unmap");
    const pt = this.#pageTable;
    if (size === this.#granule && pt !== undefined && typeof iova === "number") {
      // unmap's single-granule steps (see there why they are written out twice).
      const unmapped = pt.unmapLeaf(iova, this.#granuleLevel, this.#lastIova);
      if (unmapped >= 0) {
        this.#granuleUnmaps++;
        if (unmapped === 0) this.#granuleUnmapHoles++;
        if (this.#iotlbHeld.busy !== 0) this.#unmapGranuleRare(iova, unmapped);
        // iommu_iotlb_gather_add_range: the requested range, as the strict path invalidated it.
        if (iova < gather.start) gather.start = iova;
        if (iova + size > gather.end) gather.end = iova + size;
        return unmapped;
      }
    }
    const unmapped = this.#unmapSlow(iova, size, gather.freelist);
    // After the unmap: a refused one adds nothing (hole or not, an accepted range is added).
    if (iova < gather.start) gather.start = iova;
    if (iova + size > gather.end) gather.end = iova + size;
    return unmapped;
  }

  /** Binds an unowned gather to this domain; refuses one that holds another domain's work. */
  #adoptGather(gather: IommuIotlbGather, op: string): void {
    if (gather.owner !== undefined && !gather.empty) {
      throw new IommuError("EINVAL", `${op}: the gather holds unmaps of another domain; sync it there first (domain ${this.id})`);
    }
    gather.owner = this;
  }

  /**
   * iommu_iotlb_sync (strict): invalidates the gathered range in the IOTLB (one range invalidation, as
   * `invalidateRange`), then frees the gathered page-table pages (as `releasePtPages`), then re-inits the
   * gather (iommu_iotlb_gather_init) for the next unmaps. An empty gather does nothing.
   */
  [iotlbSync](gather: IommuIotlbGather): void {
    const owner = gather.owner;
    if (owner === undefined) return;
    if (owner !== this) this.#adoptGather(gather, "iotlbSync");
    const start = gather.start;
    const end = gather.end;
    if (start < end) {
      this.#iotlb.invalidateRange(this.id, start, end);
      this.#counters.add(C_INVAL_RANGE);
      if (this.#events.active) this.#emitInvalidate("range", start, end - start);
    }
    const freelist = gather.freelist;
    if (freelist.length !== 0) {
      this.#releaseTables(freelist);
      freelist.length = 0;
    }
    gather.start = Infinity;
    gather.end = 0;
    gather.owner = undefined;
  }

  /**
   * The lazy path of __iommu_dma_unmap: the gathered page-table pages leave the gather as a list the flush
   * queue releases (`releasePtPages`) once its IOTLB flush has covered them; undefined when the unmaps
   * detached none. The gathered range is dropped with the gather's re-init: the flush queue invalidates
   * the whole domain before it frees anything.
   */
  [iotlbGatherDetach](gather: IommuIotlbGather): PtPageList | undefined {
    const owner = gather.owner;
    if (owner === undefined) return undefined;
    if (owner !== this) this.#adoptGather(gather, "iotlbGatherDetach");
    const freelist = gather.freelist;
    const list = freelist.length === 0 ? undefined : new PendingPtPages(this, freelist.splice(0));
    gather.start = Infinity;
    gather.end = 0;
    gather.owner = undefined;
    return list;
  }

  /** The rest of a single-granule unmap, when the IOTLB holds entries of the domain or someone listens. */
  #unmapGranuleRare(iova: number, unmapped: number): void {
    const g = this.#granule;
    if (unmapped !== 0) this.#iotlb.markStale(this.id, iova, iova + g);
    if (this.#events.active) this.#emitUnmap(iova, g, unmapped, g);
  }

  #emitUnmap(iova: number, size: number, unmapped: number, pgsize: number): void {
    const trace = this.#ctx.trace;
    trace.events.emit<IommuEvent>({ type: "iommu.unmap", t: trace.clock.now, unit: this.#ctx.unit, domain: this.id, iova: iova as Iova, size, unmapped, pgsize });
  }

  /** The general unmap: checks, then clears; detached tables are appended to `freed`. Returns the bytes unmapped. */
  #unmapSlow(iova: number, size: number, freed: number[]): number {
    const pt = this.#paging("unmap");
    this.#checkRange("unmap", iova, size);
    const end = iova + size;
    // The leaf size at the start of the range, for the event: read before the leaves are cleared.
    let pgsize = this.#granule;
    if (this.#events.active && pt.lookup(iova) !== 0) pgsize = LEVEL_SIZE[pt.lastWalkLevel] ?? pgsize;
    // Most unmaps fall inside one table of 4 KiB leaves (the one the last map or unmap walked to):
    // cleared there directly. Anything else walks from the root.
    let detached = 0;
    let unmapped = pt.unmapInLeafTable(iova, end);
    if (unmapped < 0) {
      this.#checkNoPartialLeaf(pt, iova, iova, "start");
      this.#checkNoPartialLeaf(pt, end - 1, end, "end");
      const before = freed.length;
      unmapped = pt.unmap(iova, end, freed);
      detached = freed.length - before;
    }
    this.#mappedBytes -= unmapped;
    if (unmapped > 0) this.#ctx.iotlb.markStale(this.id, iova, end);
    const c = this.#ctx.trace.counters;
    c.add(Counter.IommuUnmapCalls);
    c.add(Counter.PteClears, pt.lastPtesCleared);
    c.add(Counter.PtPagesPendingFree, detached);
    if (this.#events.active) this.#emitUnmap(iova, size, unmapped, pgsize);
    return unmapped;
  }

  #checkNoPartialLeaf(pt: IoPageTable, probe: number, edge: number, which: string): void {
    const pte = pt.walk(probe);
    const level = pt.lastWalkLevel;
    if (pte === 0 || level <= 1) return;
    const sz = LEVEL_SIZE[level] ?? 0;
    if (edge % sz !== 0) {
      const leafBase = probe - (probe % sz);
      throw new IommuError(
        "EINVAL",
        `unmap: the range ${which} ${hex(edge)} falls inside the ${sz / 1024 / 1024} MiB leaf at iova ${hex(leafBase)}; ` +
          `unmapping part of a large leaf is not allowed (unmap the whole leaf)`,
      );
    }
  }

  /** Frees page-table pages an unmap detached (after the IOTLB invalidation that made them unreachable). */
  releasePtPages(list: PtPageList): void {
    if (!(list instanceof PendingPtPages) || list.domain !== this) {
      throw new IommuError("EINVAL", `releasePtPages: the list was not returned by unmap of domain ${this.id}`);
    }
    if (list.released) throw new IommuError("EINVAL", `releasePtPages: the list of ${list.count} pages was already released`);
    list.released = true;
    if (list.tables.length !== 0) this.#releaseTables(list.tables);
  }

  /** Frees detached page-table pages: their events, the page table's release, the counter. */
  #releaseTables(tables: readonly number[]): void {
    const n = tables.length;
    if (n === 0) return;
    const pt = this.#pageTable;
    if (pt !== undefined && this.#events.active) for (const t of tables) this.#emitPt("iommu.pt-free", pt.tableLevel(t), pt.tableBase(t));
    pt?.release(tables);
    this.#counters.add(C_PT_FREED, n);
  }

  /** iommu_iova_to_phys: reads the page table (not the IOTLB). Identity returns iova; blocked none. */
  iovaToPhys(iova: Iova): PhysAddr | undefined {
    if (!(typeof iova === "number" && iova >= 0 && iova <= MAX_SAFE && Number.isInteger(iova))) checkAddress("iova", iova);
    const pt = this.#pageTable;
    if (pt === undefined) return this.type === "identity" ? (iova as number as PhysAddr) : undefined;
    if (iova >= this.#vaLimit) return undefined;
    const pte = pt.lookup(iova);
    if (pte === 0) return undefined;
    // Leaves are at most 1 GiB, so the offset is in the low 32 bits: exact with integer operations.
    return (pteAddr(pte) + ((iova >>> 0) & ((LEVEL_SIZE[pt.lastWalkLevel] ?? 1) - 1))) as PhysAddr;
  }

  /**
   * iotlb_sync_map after map. On a unit with requiresSyncMap (VT-d caching mode, a virtual IOMMU) new
   * PTEs are invisible to devices until this runs; elsewhere it is counted and changes nothing.
   */
  iotlbSyncMap(iova: Iova, size: number): void {
    checkRangeArgs(iova, size);
    if (this.#ctx.requiresSyncMap && this.#pageTable !== undefined) this.#pageTable.syncMap(iova, iova + size);
    this.#counters.add(C_SYNC_MAP);
    if (this.#events.active) {
      const trace = this.#ctx.trace;
      trace.events.emit<IommuEvent>({ type: "iotlb.sync-map", t: trace.clock.now, unit: this.#ctx.unit, domain: this.id, iova, size });
    }
  }

  /** iommu_iotlb_sync over a gathered range: drops this domain's IOTLB entries overlapping it. */
  invalidateRange(iova: Iova, size: number): void {
    checkRangeArgs(iova, size);
    this.#iotlb.invalidateRange(this.id, iova, iova + size);
    this.#counters.add(C_INVAL_RANGE);
    if (this.#events.active) this.#emitInvalidate("range", iova, size);
  }

  /** flush_iotlb_all for this domain: drops every IOTLB entry tagged with it. */
  invalidateAll(): void {
    this.#ctx.iotlb.invalidateDomain(this.id);
    this.#counters.add(Counter.IotlbInvalDomain);
    if (this.#events.active) this.#emitInvalidate("domain", 0, 0);
  }

  #emitInvalidate(scope: "range" | "domain", iova: number, size: number): void {
    const trace = this.#ctx.trace;
    trace.events.emit<IommuEvent>({ type: "iotlb.invalidate", t: trace.clock.now, unit: this.#ctx.unit, scope, domain: this.id, iova: iova as Iova, size });
  }
}

/** checkAddress("iova") then checkSize("size"), with one inlined test for the common valid case. */
function checkRangeArgs(iova: number, size: number): void {
  if (
    typeof iova === "number" &&
    typeof size === "number" &&
    iova >= 0 &&
    size > 0 &&
    iova <= MAX_SAFE &&
    size <= MAX_SAFE &&
    Number.isInteger(iova) &&
    Number.isInteger(size)
  ) {
    return;
  }
  checkAddress("iova", iova);
  checkSize("size", size);
}

