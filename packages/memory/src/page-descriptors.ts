import type { Trace } from "@dmasim/trace";
import { Counter } from "./counters.js";
import { PAGE_SIZE, checkNat } from "./addresses.js";
import type { PhysAddr } from "./addresses.js";
import { AddressError, PageStateError, RegionOverlapError, UnmappedAddressError } from "./errors.js";
import { hex } from "@dmasim/trace";
import { kApplyFlags, kCheckZoneDeviceRange, kFirstMissing, kFirstWithout, kZoneDeviceOverlap } from "./internal.js";
import { PAGE_FLAG_MASK, PageFlag } from "./page-flags.js";

/**
 * Pages per section, as x86-64 SPARSEMEM (SECTION_SIZE_BITS = 27: 128 MiB). A section's descriptors are
 * one Uint16Array created on the first flag change inside it; until then every page reads its default.
 */
export const SECTION_PAGES = 32768;
/** Internal bit 15: "this pfn has a struct page", so a materialised section can tell pages from holes. */
const PRESENT = 1 << 15;

/** What a range of struct pages backs: RAM, a P2P BAR (MEMORY_DEVICE_PCI_P2PDMA) or device-private memory (MEMORY_DEVICE_PRIVATE). */
export type PageRangeKind = "ram" | "p2pdma" | "device-private";
/** Kinds as bits, for coverage checks that accept several. */
export const RangeKind = { RAM: 1, P2PDMA: 2, DEVICE_PRIVATE: 4, ANY: 7 } as const;

/** A run of page frames that has struct pages: a RAM region, or a ZONE_DEVICE range (one dev_pagemap). */
export interface PageRange {
  /** First page frame number of the range. */
  readonly startPfn: number;
  /** Page frame number just past the range. */
  readonly endPfn: number;
  /** What the pages back. */
  readonly kind: PageRangeKind;
  /** The dev_pagemap owner (P2P provider id) for ZONE_DEVICE ranges; 0 for RAM. */
  readonly owner: number;
  /** PageFlag bits a page of the range has before anyone changes it. */
  readonly defaultFlags: number;
}

/** What addZoneDevice must ask the memory map before it can accept a range (package-private: not exported from index.ts). */
export interface ZoneDeviceHost {
  /** Throws unless [phys, phys + size) may hold ZONE_DEVICE pages of `kind`. */
  [kCheckZoneDeviceRange](phys: number, size: number, kind: PageRangeKind): void;
}

const KIND_BIT: Record<PageRangeKind, number> = { ram: 1, p2pdma: 2, "device-private": 4 };

/**
 * struct page for every page frame that has one (RAM and ZONE_DEVICE ranges), kept sparse like SPARSEMEM:
 * flags live in per-section Uint16Arrays made on first write; the dev_pagemap owner is a property of the
 * range (page->pgmap), so it costs nothing per page. Created by PhysicalMemory.
 */
export class PageDescriptors {
  readonly #trace: Trace;
  readonly #host: ZoneDeviceHost;
  readonly #sections = new Map<number, Uint16Array>();
  #lastSectionIndex = -1;
  #lastSection: Uint16Array | undefined = undefined;
  #ranges: PageRange[] = [];
  #lastRange: PageRange | undefined = undefined;

  /** PhysicalMemory builds this (`.` exports the class as a type only); `ram` are page-aligned RAM ranges in pfns. */
  constructor(trace: Trace, host: ZoneDeviceHost, ram: readonly { startPfn: number; endPfn: number }[], confidential: boolean) {
    trace.counters.declare(Counter);
    this.#trace = trace;
    this.#host = host;
    const defaultFlags = confidential ? PageFlag.ENCRYPTED : 0;
    for (const r of ram) this.#insertRange({ startPfn: r.startPfn, endPfn: r.endPfn, kind: "ram", owner: 0, defaultFlags });
  }

  /** pfn_valid() for this model: the frame has a struct page (RAM or ZONE_DEVICE). */
  hasPage(pfn: number): boolean {
    return Number.isSafeInteger(pfn) && this.#rangeOf(pfn) !== undefined;
  }

  /** The page's PageFlag bits. Counts one PageDescLookups. Throws when the frame has no struct page. */
  flags(pfn: number): number {
    this.#trace.counters.add(Counter.PageDescLookups);
    const sec = Math.floor(pfn / SECTION_PAGES);
    const arr = sec === this.#lastSectionIndex ? this.#lastSection : this.#section(sec);
    if (arr !== undefined) {
      const v = arr[pfn - sec * SECTION_PAGES];
      if (v !== undefined && (v & PRESENT) !== 0) return v & PAGE_FLAG_MASK;
    } else {
      const r = this.#rangeOf(pfn);
      if (r !== undefined && Number.isSafeInteger(pfn)) return r.defaultFlags;
    }
    throw this.#noPage("flags", pfn);
  }

  /** The dev_pagemap owner (P2P provider id) of a ZONE_DEVICE page; 0 for RAM. Counts one PageDescLookups. */
  owner(pfn: number): number {
    this.#trace.counters.add(Counter.PageDescLookups);
    const r = Number.isSafeInteger(pfn) ? this.#rangeOf(pfn) : undefined;
    if (r === undefined) throw this.#noPage("owner", pfn);
    return r.owner;
  }

  /** The range (RAM region or dev_pagemap) holding `pfn`, or undefined. */
  rangeOf(pfn: number): PageRange | undefined {
    return this.#rangeOf(pfn);
  }

  /** Every range with struct pages, sorted by pfn. */
  ranges(): readonly PageRange[] {
    return this.#ranges.slice();
  }

  /** Sections whose descriptors have been materialised (each 64 KiB of flags). */
  get materialisedSections(): number {
    return this.#sections.size;
  }

  /** ORs `flags` into `count` pages from `pfn`. PageFlag.ALLOCATED belongs to the page allocator. */
  setFlags(pfn: number, count: number, flags: number): void {
    this.#checkUpdate("setFlags", pfn, count, flags);
    this[kApplyFlags](pfn, count, flags, 0);
  }

  /** Clears `flags` in `count` pages from `pfn`. PageFlag.ALLOCATED belongs to the page allocator. */
  clearFlags(pfn: number, count: number, flags: number): void {
    this.#checkUpdate("clearFlags", pfn, count, flags);
    this[kApplyFlags](pfn, count, 0, flags);
  }

  /**
   * memremap_pages(): gives [phys, phys + size) struct pages of a ZONE_DEVICE kind owned by `owner`.
   * "p2pdma" ranges must lie in one MMIO region (a BAR, pci_p2pdma_add_resource); "device-private" ranges
   * must be in a hole of the physical map (request_free_mem_region), since the CPU cannot address them.
   */
  addZoneDevice(phys: PhysAddr, size: number, options: { owner: number; kind: "p2pdma" | "device-private" }): void {
    this.#checkPageRange("addZoneDevice", phys, size);
    const { owner, kind } = options;
    if (!Number.isSafeInteger(owner) || owner < 1 || owner > 0xffffffff) {
      throw new AddressError("owner", owner, "a dev_pagemap owner id 1..2^32-1 (0 means none)");
    }
    if ((kind as string) !== "p2pdma" && (kind as string) !== "device-private") {
      throw new AddressError("kind", kind, '"p2pdma" or "device-private"');
    }
    const startPfn = phys / PAGE_SIZE;
    const endPfn = startPfn + size / PAGE_SIZE;
    for (const r of this.#ranges) {
      if (r.startPfn < endPfn && startPfn < r.endPfn) {
        throw new RegionOverlapError(phys, size, `${r.kind} pages [${hex(r.startPfn * PAGE_SIZE)}, ${hex(r.endPfn * PAGE_SIZE)})`);
      }
    }
    this.#host[kCheckZoneDeviceRange](phys, size, kind);
    const defaultFlags = PageFlag.ZONE_DEVICE | (kind === "p2pdma" ? PageFlag.P2PDMA : PageFlag.DEVICE_PRIVATE);
    this.#insertRange({ startPfn, endPfn, kind, owner, defaultFlags });
    this.#fillMaterialised(startPfn, endPfn, defaultFlags | PRESENT);
  }

  /** memunmap_pages(): drops a range added by addZoneDevice; base and size must match it exactly. */
  removeZoneDevice(phys: PhysAddr, size: number): void {
    this.#checkPageRange("removeZoneDevice", phys, size);
    const startPfn = phys / PAGE_SIZE;
    const endPfn = startPfn + size / PAGE_SIZE;
    const i = this.#ranges.findIndex((r) => r.startPfn === startPfn && r.endPfn === endPfn && r.kind !== "ram");
    if (i < 0) {
      throw new PageStateError(startPfn, `removeZoneDevice: no ZONE_DEVICE range is exactly [${hex(phys)}, ${hex(phys + size)}); pass the base and size given to addZoneDevice`);
    }
    this.#ranges.splice(i, 1);
    this.#lastRange = undefined;
    this.#fillMaterialised(startPfn, endPfn, 0);
  }

  /** The ZONE_DEVICE range overlapping [phys, phys + size), if any (PhysicalMemory's MMIO checks). */
  [kZoneDeviceOverlap](phys: number, size: number): PageRange | undefined {
    const s = phys / PAGE_SIZE;
    const e = (phys + size) / PAGE_SIZE;
    return this.#ranges.find((r) => r.kind !== "ram" && r.startPfn < e && s < r.endPfn);
  }

  /** `v = (v & ~clear) | set` for every page of [pfn, pfn + count); no checks. */
  [kApplyFlags](pfn: number, count: number, set: number, clear: number): void {
    const end = pfn + count;
    let p = pfn;
    while (p < end) {
      const sec = Math.floor(p / SECTION_PAGES);
      const base = sec * SECTION_PAGES;
      const stop = Math.min(end, base + SECTION_PAGES);
      const arr = this.#materialise(sec);
      const keep = ~clear;
      for (let i = p - base, n = stop - base; i < n; i++) arr[i] = ((arr[i] ?? 0) & keep) | set;
      p = stop;
    }
  }

  /** First pfn of [pfn, pfn + count) not in a range of `kinds` (RangeKind bits), or -1. */
  [kFirstMissing](pfn: number, count: number, kinds: number): number {
    const end = pfn + count;
    let p = pfn;
    while (p < end) {
      const r = this.#rangeOf(p);
      if (r === undefined || (KIND_BIT[r.kind] & kinds) === 0) return p;
      p = r.endPfn;
    }
    return -1;
  }

  /** First pfn of [pfn, pfn + count) whose flags lack any bit of `bits`, or -1. Pages must exist. */
  [kFirstWithout](pfn: number, count: number, bits: number): number {
    const end = pfn + count;
    let p = pfn;
    while (p < end) {
      const sec = Math.floor(p / SECTION_PAGES);
      const base = sec * SECTION_PAGES;
      const stop = Math.min(end, base + SECTION_PAGES);
      const arr = this.#section(sec);
      if (arr === undefined) {
        for (let q = p; q < stop; ) {
          const r = this.#rangeOf(q);
          if (r === undefined || (r.defaultFlags & bits) !== bits) return q;
          q = r.endPfn;
        }
      } else {
        for (let i = p - base, n = stop - base; i < n; i++) if (((arr[i] ?? 0) & bits) !== bits) return base + i;
      }
      p = stop;
    }
    return -1;
  }

  #checkUpdate(fn: string, pfn: number, count: number, flags: number): void {
    checkNat("pfn", pfn);
    checkNat("count", count);
    if (!Number.isSafeInteger(pfn + count)) throw new AddressError("count", count, "a count that keeps pfn + count a safe integer");
    if (!Number.isInteger(flags) || (flags & ~PAGE_FLAG_MASK) !== 0 || flags < 0) {
      throw new AddressError("flags", flags, `a combination of PageFlag bits (mask ${hex(PAGE_FLAG_MASK)}) (${fn})`);
    }
    if ((flags & PageFlag.ALLOCATED) !== 0) {
      throw new AddressError("flags", flags, `flags without PageFlag.ALLOCATED, which only the page allocator sets and clears (${fn})`);
    }
    const missing = this[kFirstMissing](pfn, count, RangeKind.ANY);
    if (missing >= 0) throw this.#noPage(fn, missing);
  }

  #checkPageRange(fn: string, phys: number, size: number): void {
    checkNat("phys", phys);
    checkNat("size", size);
    if (phys % PAGE_SIZE !== 0) throw new AddressError("phys", phys, `a page-aligned address (${fn})`);
    if (size === 0 || size % PAGE_SIZE !== 0 || !Number.isSafeInteger(phys + size)) {
      throw new AddressError("size", size, `a non-zero multiple of PAGE_SIZE that keeps phys + size safe (${fn})`);
    }
  }

  #noPage(fn: string, pfn: number): Error {
    if (!Number.isSafeInteger(pfn) || pfn < 0) return new AddressError("pfn", pfn, `a page frame number: a safe integer >= 0 (${fn})`);
    return new UnmappedAddressError(pfn * PAGE_SIZE, `${fn}: pfn ${hex(pfn)} has no struct page (not RAM or ZONE_DEVICE)`);
  }

  #section(sec: number): Uint16Array | undefined {
    if (sec === this.#lastSectionIndex) return this.#lastSection;
    const arr = this.#sections.get(sec);
    this.#lastSectionIndex = sec;
    this.#lastSection = arr;
    return arr;
  }

  #materialise(sec: number): Uint16Array {
    const found = this.#section(sec);
    if (found !== undefined) return found;
    const arr = new Uint16Array(SECTION_PAGES);
    const base = sec * SECTION_PAGES;
    for (const r of this.#ranges) {
      const lo = Math.max(r.startPfn, base);
      const hi = Math.min(r.endPfn, base + SECTION_PAGES);
      if (lo < hi) arr.fill(r.defaultFlags | PRESENT, lo - base, hi - base);
    }
    this.#sections.set(sec, arr);
    this.#lastSection = arr;
    return arr;
  }

  /** Writes `value` into the pages of [startPfn, endPfn) that sit in sections already materialised. */
  #fillMaterialised(startPfn: number, endPfn: number, value: number): void {
    for (const [sec, arr] of this.#sections) {
      const base = sec * SECTION_PAGES;
      const lo = Math.max(startPfn, base);
      const hi = Math.min(endPfn, base + SECTION_PAGES);
      if (lo < hi) arr.fill(value, lo - base, hi - base);
    }
  }

  #rangeOf(pfn: number): PageRange | undefined {
    const last = this.#lastRange;
    if (last !== undefined && pfn >= last.startPfn && pfn < last.endPfn) return last;
    const rs = this.#ranges;
    let lo = 0;
    let hi = rs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const r = rs[mid];
      if (r === undefined || pfn < r.startPfn) hi = mid - 1;
      else if (pfn >= r.endPfn) lo = mid + 1;
      else {
        this.#lastRange = r;
        return r;
      }
    }
    return undefined;
  }

  #insertRange(range: PageRange): void {
    let i = 0;
    while (i < this.#ranges.length && (this.#ranges[i]?.startPfn ?? Infinity) < range.startPfn) i++;
    this.#ranges.splice(i, 0, range);
  }
}
