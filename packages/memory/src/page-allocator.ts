import type { Trace } from "@dmasim/trace";
import { Counter } from "./counters.js";
import type { PhysAddr } from "./addresses.js";
import { PAGE_SIZE, checkNat } from "./addresses.js";
import { AddressError, OutOfMemoryError, PageStateError } from "./errors.js";
import { hex } from "@dmasim/trace";
import { kApplyFlags, kFirstMissing, kFirstWithout } from "./internal.js";
import type { PageDescriptors } from "./page-descriptors.js";
import { RangeKind } from "./page-descriptors.js";
import { PAGE_FLAG_MASK, PAGE_KIND_FLAGS, PageFlag } from "./page-flags.js";

/** Constraints for `allocPages` (alloc_pages with a zone and an order alignment). */
export interface AllocPagesOptions {
  /** Alignment of the first page frame number, in pages; a power of two (default 1). */
  readonly align?: number;
  /** Exclusive upper limit of the run's physical addresses (DMA32-style: `below: 4 * GiB`). */
  readonly below?: number;
  /** PageFlag bits to set on the pages besides PageFlag.ALLOCATED (SLAB, STACK, KERNEL_TEXT, RESERVED). */
  readonly flags?: number;
}

/** A run of free page frames, as listed by `freeRuns()`. */
export interface FreeRun {
  /** Physical address of the run's first page. */
  readonly phys: PhysAddr;
  /** Pages in the run. */
  readonly pages: number;
}

/**
 * The page allocator: hands out runs of RAM page frames, lowest address first fit, so a run is
 * reproducible. Free memory is a sorted list of free extents (start and end pfn), so a terabyte of free
 * RAM is one entry; allocation scans it in address order, freeing merges with both neighbours.
 * Whether a page is allocated is recorded in its descriptor (PageFlag.ALLOCATED), which is how double
 * frees and frees of never-allocated pages are caught — like the page-state checks of free_pages().
 * Created by PhysicalMemory.
 */
export class PageAllocator {
  readonly #trace: Trace;
  readonly #pages: PageDescriptors;
  #starts: number[] = [];
  #ends: number[] = [];
  #freePages = 0;
  #allocated = 0;

  /** PhysicalMemory builds this (`.` exports the class as a type only); `free` are the initially free runs in pfns, sorted and disjoint. */
  constructor(trace: Trace, pages: PageDescriptors, free: readonly { startPfn: number; endPfn: number }[]) {
    trace.counters.declare(Counter);
    this.#trace = trace;
    this.#pages = pages;
    for (const r of free) this.#insertFree(r.startPfn, r.endPfn);
  }

  /** Free RAM in bytes (freePageCount * PAGE_SIZE). */
  get freeBytes(): number {
    return this.#freePages * PAGE_SIZE;
  }

  /** Pages the allocator can still hand out (nr_free_pages). */
  get freePageCount(): number {
    return this.#freePages;
  }

  /** Pages handed out and not yet freed. */
  get allocatedPages(): number {
    return this.#allocated;
  }

  /** The free extents in address order (a debugging view, like /proc/buddyinfo but exact). */
  freeRuns(): readonly FreeRun[] {
    return this.#starts.map((s, i) => ({ phys: (s * PAGE_SIZE) as PhysAddr, pages: (this.#ends[i] ?? 0) - s }));
  }

  /**
   * alloc_contig_pages()/alloc_pages(): `count` physically contiguous pages, the lowest run that fits.
   * Throws OutOfMemoryError (ENOMEM) when none does; nothing changes then.
   */
  allocPages(count: number, options: AllocPagesOptions = {}): PhysAddr {
    if (!Number.isSafeInteger(count) || count < 1) throw new AddressError("count", count, "a number of pages >= 1 (allocPages)");
    const align = options.align ?? 1;
    if (!Number.isSafeInteger(align) || align < 1 || 2 ** Math.round(Math.log2(align)) !== align) {
      throw new AddressError("align", align, "a power of two number of pages >= 1 (allocPages)");
    }
    const below = options.below ?? Infinity;
    if (below !== Infinity && (!Number.isSafeInteger(below) || below < 0)) {
      throw new AddressError("below", below, "an exclusive physical limit: a safe integer >= 0 (allocPages)");
    }
    const flags = options.flags ?? 0;
    if (!Number.isInteger(flags) || flags < 0 || (flags & ~PAGE_FLAG_MASK) !== 0 || (flags & PAGE_KIND_FLAGS) !== 0) {
      throw new AddressError("flags", flags, "PageFlag bits other than ZONE_DEVICE, P2PDMA, DEVICE_PRIVATE and ENCRYPTED, which describe memory, not its use (allocPages)");
    }
    const limitPfn = below === Infinity ? Infinity : Math.floor(below / PAGE_SIZE);
    const starts = this.#starts;
    const ends = this.#ends;
    for (let i = 0; i < starts.length; i++) {
      const s = starts[i] ?? 0;
      if (s + count > limitPfn) break;
      const e = ends[i] ?? 0;
      const a = Math.ceil(s / align) * align;
      if (a + count > e || a + count > limitPfn) continue;
      this.#carve(i, a, a + count);
      this.#pages[kApplyFlags](a, count, PageFlag.ALLOCATED | flags, 0);
      this.#allocated += count;
      this.#trace.counters.add(Counter.PageAllocs, count);
      return (a * PAGE_SIZE) as PhysAddr;
    }
    throw new OutOfMemoryError(count, align, below, this.#freePages, this.#largestRun());
  }

  /**
   * free_contig_range()/free_pages_exact(): returns `count` pages from `phys`. Every page must be
   * allocated; otherwise PageStateError names the first that is not and nothing is freed. The page keeps
   * its encryption state: a confidential guest must set_memory_encrypted() shared pages before freeing.
   */
  freePages(phys: PhysAddr, count: number): void {
    checkNat("phys", phys);
    if (phys % PAGE_SIZE !== 0) throw new AddressError("phys", phys, "a page-aligned physical address (freePages)");
    if (!Number.isSafeInteger(count) || count < 1) throw new AddressError("count", count, "a number of pages >= 1 (freePages)");
    const pfn = phys / PAGE_SIZE;
    const notRam = this.#pages[kFirstMissing](pfn, count, RangeKind.RAM);
    if (notRam >= 0) {
      throw new PageStateError(notRam, `freePages: pfn ${hex(notRam)} (${hex(notRam * PAGE_SIZE)}) is not RAM, so it was never allocated`);
    }
    const notAllocated = this.#pages[kFirstWithout](pfn, count, PageFlag.ALLOCATED);
    if (notAllocated >= 0) {
      throw new PageStateError(
        notAllocated,
        `freePages: pfn ${hex(notAllocated)} (${hex(notAllocated * PAGE_SIZE)}) is not allocated: a double free, or a page never allocated`,
      );
    }
    this.#pages[kApplyFlags](pfn, count, 0, PAGE_FLAG_MASK & ~PageFlag.ENCRYPTED);
    this.#insertFree(pfn, pfn + count);
    this.#allocated -= count;
    this.#trace.counters.add(Counter.PageFrees, count);
  }

  #carve(i: number, lo: number, hi: number): void {
    const s = this.#starts[i] ?? 0;
    const e = this.#ends[i] ?? 0;
    if (s === lo && e === hi) {
      this.#starts.splice(i, 1);
      this.#ends.splice(i, 1);
    } else if (s === lo) {
      this.#starts[i] = hi;
    } else if (e === hi) {
      this.#ends[i] = lo;
    } else {
      this.#ends[i] = lo;
      this.#starts.splice(i + 1, 0, hi);
      this.#ends.splice(i + 1, 0, e);
    }
    this.#freePages -= hi - lo;
  }

  /** Inserts the free run [lo, hi), merging with neighbours that touch it. */
  #insertFree(lo: number, hi: number): void {
    const starts = this.#starts;
    const ends = this.#ends;
    let l = 0;
    let h = starts.length;
    while (l < h) {
      const mid = (l + h) >>> 1;
      if ((starts[mid] ?? 0) < lo) l = mid + 1;
      else h = mid;
    }
    const mergePrev = l > 0 && ends[l - 1] === lo;
    const mergeNext = l < starts.length && starts[l] === hi;
    if (mergePrev && mergeNext) {
      ends[l - 1] = ends[l] ?? 0;
      starts.splice(l, 1);
      ends.splice(l, 1);
    } else if (mergePrev) {
      ends[l - 1] = hi;
    } else if (mergeNext) {
      starts[l] = lo;
    } else {
      starts.splice(l, 0, lo);
      ends.splice(l, 0, hi);
    }
    this.#freePages += hi - lo;
  }

  #largestRun(): number {
    let best = 0;
    for (let i = 0; i < this.#starts.length; i++) best = Math.max(best, (this.#ends[i] ?? 0) - (this.#starts[i] ?? 0));
    return best;
  }
}
