import type { Trace } from "@dmasim/trace";
import { Counter } from "./counters.js";
import type { PhysAddr } from "./addresses.js";
import { MAX_READ_BYTES, PAGE_SIZE, checkNat, checkRange } from "./addresses.js";
import { AddressError, MmioNoBackingError, PageStateError, RegionOverlapError, UnmappedAddressError } from "./errors.js";
import { hex } from "@dmasim/trace";
import { kApplyFlags, kCheckZoneDeviceRange, kFirstMissing, kZoneDeviceOverlap } from "./internal.js";
import { PageAllocator } from "./page-allocator.js";
import type { PageRangeKind, ZoneDeviceHost } from "./page-descriptors.js";
import { PageDescriptors, RangeKind } from "./page-descriptors.js";
import { PageFlag } from "./page-flags.js";
import type { Region, RegionInfo } from "./regions.js";
import { RegionTable } from "./regions.js";
import { SparseStore } from "./sparse-store.js";

/** One RAM range of the physical address map. */
export interface RamRangeSpec {
  /** Physical address of the first byte; page-aligned. */
  readonly base: number;
  /** Bytes in the range; a multiple of PAGE_SIZE. */
  readonly size: number;
  /** Shown by regions() and iomem(); default "System RAM". */
  readonly name?: string;
}

/** How to build a `PhysicalMemory`: its RAM, whether the guest is confidential, what is reserved. */
export interface PhysicalMemoryOptions {
  /** RAM ranges: page-aligned, non-overlapping. */
  readonly ram: readonly RamRangeSpec[];
  /** A confidential guest (SEV-SNP/TDX): every RAM page starts private (PageFlag.ENCRYPTED). */
  readonly confidential?: boolean;
  /** memblock_reserve(): page-aligned parts of RAM that get PageFlag.RESERVED and are never allocated. */
  readonly reserved?: readonly { readonly base: number; readonly size: number }[];
}

/** How to register an MMIO region (a device BAR) with `addMmio`. */
export interface MmioOptions {
  /** Shown by regions() and iomem(), e.g. the BAR's name. */
  readonly name: string;
  /** Who owns the range, e.g. the BDF of the device whose BAR it is. */
  readonly owner?: string;
  /** Bytes behind the range (device memory a BAR exposes); without it, accesses throw MmioNoBackingError. */
  readonly backing?: SparseStore;
}

/** The public call an access came through, for error messages. */
type AccessFn = "read" | "readInto" | "write" | "fill";

/**
 * The physical address space of one platform: RAM regions and MMIO regions, the bytes behind them, the
 * page descriptors and the page allocator. CPU accesses go through read/readInto/write/fill at any
 * address and length, across page and region boundaries; an access that would touch a hole or an MMIO
 * region without backing is refused before any byte moves.
 */
export class PhysicalMemory implements ZoneDeviceHost {
  /** The platform's trace: counters and events of the memory layer go here. */
  readonly trace: Trace;
  /** True for a confidential guest: RAM pages start private (PageFlag.ENCRYPTED). */
  readonly confidential: boolean;
  /** The struct page array (flags and refcounts per page frame). */
  readonly pages: PageDescriptors;
  /** The page allocator over this memory's RAM. */
  readonly allocator: PageAllocator;
  readonly #table = new RegionTable();
  /** The region of the last access, if it has bytes: the hot path checks it before any search. */
  #last: BackedRegion | undefined = undefined;

  constructor(trace: Trace, options: PhysicalMemoryOptions) {
    trace.counters.declare(Counter);
    this.trace = trace;
    this.confidential = options.confidential ?? false;
    const ram: readonly RamRangeSpec[] = options.ram;
    if (!isArray(ram)) throw new AddressError("options.ram", ram, "an array of { base, size } RAM ranges");
    const pfnRanges: { startPfn: number; endPfn: number }[] = [];
    ram.forEach((r, i) => {
      const what = `options.ram[${i}]`;
      checkPageAlignedRange(what, r.base, r.size);
      const name = r.name ?? "System RAM";
      if (typeof name !== "string" || name === "") throw new AddressError(`${what}.name`, name, "a non-empty string");
      const clash = this.#table.overlapping(r.base, r.base + r.size);
      if (clash !== undefined) throw new RegionOverlapError(r.base, r.size, describe(clash));
      this.#table.insert(makeRegion("ram", r.base, r.size, name, undefined, new SparseStore(r.size)));
    });
    for (const r of this.#table.list) pfnRanges.push({ startPfn: r.base / PAGE_SIZE, endPfn: r.end / PAGE_SIZE });
    const reserved = (options.reserved ?? []).map((r, i) => {
      checkPageAlignedRange(`options.reserved[${i}]`, r.base, r.size);
      if (!this.#allRam(r.base, r.size)) throw new AddressError(`options.reserved[${i}].base`, r.base, "a range inside RAM");
      return { startPfn: r.base / PAGE_SIZE, endPfn: (r.base + r.size) / PAGE_SIZE };
    });
    this.pages = new PageDescriptors(trace, this, pfnRanges, this.confidential);
    for (const r of reserved) this.pages[kApplyFlags](r.startPfn, r.endPfn - r.startPfn, PageFlag.RESERVED, 0);
    this.allocator = new PageAllocator(trace, this.pages, subtract(pfnRanges, reserved));
  }

  /** Registers an MMIO range (a BAR, a doorbell page): no struct pages unless addZoneDevice gives it some. */
  addMmio(base: PhysAddr, size: number, options: MmioOptions): RegionInfo {
    checkRange("base", base, size);
    if (size === 0) throw new AddressError("size", size, "an MMIO size >= 1 byte (addMmio)");
    const { name, owner, backing } = options;
    if (typeof name !== "string" || name === "") throw new AddressError("options.name", name, "a non-empty string (addMmio)");
    if (owner !== undefined && typeof owner !== "string") throw new AddressError("options.owner", owner, "a string such as a BDF (addMmio)");
    if (backing !== undefined) {
      if (!(backing instanceof SparseStore)) throw new AddressError("options.backing", backing, "a SparseStore (addMmio)");
      if (backing.size < size) throw new AddressError("options.backing.size", backing.size, `a backing of at least the region size, ${size} bytes (addMmio)`);
    }
    const clash = this.#table.overlapping(base, base + size);
    if (clash !== undefined) throw new RegionOverlapError(base, size, describe(clash));
    const zd = this.pages[kZoneDeviceOverlap](Math.floor(base / PAGE_SIZE) * PAGE_SIZE, Math.ceil((base + size) / PAGE_SIZE) * PAGE_SIZE - Math.floor(base / PAGE_SIZE) * PAGE_SIZE);
    if (zd !== undefined) {
      throw new RegionOverlapError(base, size, `${zd.kind} ZONE_DEVICE pages [${hex(zd.startPfn * PAGE_SIZE)}, ${hex(zd.endPfn * PAGE_SIZE)})`);
    }
    const region = makeRegion("mmio", base, size, name, owner, backing);
    this.#table.insert(region);
    return region.info;
  }

  /** Removes the MMIO region that starts at `base` (a device going away). Its ZONE_DEVICE pages must be removed first. */
  removeMmio(base: PhysAddr): void {
    checkNat("base", base);
    const region = this.#table.at(this.#table.indexOf(base));
    if (region?.info.kind !== "mmio" || region.base !== base) {
      throw new UnmappedAddressError(base, "removeMmio: no MMIO region starts at this address");
    }
    const pageBase = Math.floor(base / PAGE_SIZE) * PAGE_SIZE;
    const zd = this.pages[kZoneDeviceOverlap](pageBase, Math.ceil(region.end / PAGE_SIZE) * PAGE_SIZE - pageBase);
    if (zd !== undefined) {
      throw new PageStateError(zd.startPfn, `removeMmio: region "${region.info.name}" still has ZONE_DEVICE pages from ${hex(zd.startPfn * PAGE_SIZE)}; call pages.removeZoneDevice first`);
    }
    this.#table.remove(region);
    if (this.#last === region) this.#last = undefined;
  }

  /** Every region in address order (frozen). */
  regions(): readonly RegionInfo[] {
    return this.#table.infos;
  }

  /** The region that contains `phys`, or undefined when `phys` falls in a hole of the physical address map. */
  regionAt(phys: PhysAddr): RegionInfo | undefined {
    checkNat("phys", phys);
    return this.#table.at(this.#table.indexOf(phys))?.info;
  }

  /** True when all of [phys, phys + len) is RAM (adjacent RAM regions count as one); len 0 asks about phys. */
  isRam(phys: PhysAddr, len: number): boolean {
    checkRange("phys", phys, len);
    return this.#allRam(phys, Math.max(len, 1));
  }

  /** Bytes of RAM in all regions. */
  get ramBytes(): number {
    let n = 0;
    for (const r of this.#table.list) if (r.info.kind === "ram") n += r.end - r.base;
    return n;
  }

  /** Pages of RAM and MMIO backing that hold bytes because they were written. */
  get materialisedPages(): number {
    let n = 0;
    for (const r of this.#table.list) if (r.store !== undefined) n += r.store.materialisedPages;
    return n;
  }

  /**
   * A new buffer with the `len` bytes at `phys` (never-written RAM reads as zeros); throws `UnmappedAddressError` for
   * a hole, `MmioNoBackingError` for MMIO without a backing store, `AddressError` above `MAX_READ_BYTES`.
   */
  read(phys: PhysAddr, len: number): Uint8Array {
    checkNat("len", len);
    if (len > MAX_READ_BYTES) throw new AddressError("len", len, `at most MAX_READ_BYTES (${MAX_READ_BYTES}) for a read that returns a new buffer; use readInto with your own buffer`);
    const r = this.#last;
    if (r !== undefined && phys >= r.base && phys + len <= r.end && Number.isSafeInteger(phys)) {
      const out = new Uint8Array(len);
      r.store.readInto(phys - r.base, out);
      this.trace.counters.add(Counter.MemReadBytes, len);
      return out;
    }
    // The whole range is checked before the buffer is allocated: a read of a hole allocates nothing.
    this.#check("read", phys, len);
    const out = new Uint8Array(len);
    this.#slow("read", phys, len, out, 0);
    return out;
  }

  /** The hot path: one check against the last region hit, then the store copies page by page. */
  readInto(phys: PhysAddr, dst: Uint8Array): void {
    if (!(dst instanceof Uint8Array)) throw new AddressError("dst", dst, "a Uint8Array to read into");
    const len = dst.length;
    const r = this.#last;
    if (r !== undefined && phys >= r.base && phys + len <= r.end && Number.isSafeInteger(phys)) {
      r.store.readInto(phys - r.base, dst);
      this.trace.counters.add(Counter.MemReadBytes, len);
      return;
    }
    this.#slow("readInto", phys, len, dst, 0);
  }

  /**
   * Stores `bytes` at `phys`, materialising the pages it touches; throws `UnmappedAddressError` or
   * `MmioNoBackingError` like `read`, before writing anything.
   */
  write(phys: PhysAddr, bytes: Uint8Array): void {
    // Anything else (a plain array, an Int8Array, a string) would be copied by the store's `set` in its own way.
    if (!(bytes instanceof Uint8Array)) throw new AddressError("bytes", bytes, "a Uint8Array of the bytes to write");
    const len = bytes.length;
    const r = this.#last;
    if (r !== undefined && phys >= r.base && phys + len <= r.end && Number.isSafeInteger(phys)) {
      const store = r.store;
      const before = store.materialisedPages;
      store.write(phys - r.base, bytes);
      const counters = this.trace.counters;
      counters.add(Counter.MemWriteBytes, len);
      if (store.materialisedPages !== before) counters.add(Counter.MemPagesMaterialised, store.materialisedPages - before);
      return;
    }
    this.#slow("write", phys, len, bytes, 0);
  }

  /**
   * memcpy() within physical memory, `len` bytes from `src` to `dst` (ranges must not overlap): when each
   * range lies in one backed region the bytes move store to store with no intermediate buffer (one copy
   * per byte — what a device's copy engine or the CPU's memcpy does); otherwise through a bounded
   * buffer. Both ranges are checked first: a refused copy moves nothing.
   */
  copy(dst: PhysAddr, src: PhysAddr, len: number): void {
    checkNat("len", len);
    if (len === 0) return;
    const si = this.#check("read", src, len);
    const di = this.#check("write", dst, len);
    if (src < dst + len && dst < src + len) throw new AddressError("dst", dst, `a destination that does not overlap the source [${src}, ${src + len}) (copy)`);
    const sr = this.#table.at(si);
    const dr = this.#table.at(di);
    if (isBacked(sr) && isBacked(dr) && src + len <= sr.end && dst + len <= dr.end) {
      const before = dr.store.materialisedPages;
      dr.store.copyFrom(sr.store, src - sr.base, dst - dr.base, len);
      const counters = this.trace.counters;
      if (dr.store.materialisedPages !== before) counters.add(Counter.MemPagesMaterialised, dr.store.materialisedPages - before);
      counters.add(Counter.MemReadBytes, len);
      counters.add(Counter.MemWriteBytes, len);
      return;
    }
    const chunk = new Uint8Array(Math.min(len, 1 << 20));
    for (let done = 0; done < len; done += chunk.length) {
      const part = len - done < chunk.length ? chunk.subarray(0, len - done) : chunk;
      this.readInto((src + done) as PhysAddr, part);
      this.write((dst + done) as PhysAddr, part);
    }
  }

  /** memset() of physical memory. Zero-filling pages never written allocates nothing. */
  fill(phys: PhysAddr, len: number, value: number): void {
    if (!Number.isInteger(value) || value < 0 || value > 255) throw new AddressError("value", value, "a byte value 0..255 (fill)");
    checkNat("len", len);
    this.#slow("fill", phys, len, undefined, value);
  }

  /**
   * set_memory_decrypted(): makes `nrPages` RAM pages from `phys` shared with the host, so devices can
   * reach them. Like the kernel, a no-op (after argument checks) on a machine that is not confidential.
   */
  setMemoryDecrypted(phys: PhysAddr, nrPages: number): void {
    this.#setEncryption("setMemoryDecrypted", phys, nrPages, false);
  }

  /** set_memory_encrypted(): makes the pages private to the guest again. */
  setMemoryEncrypted(phys: PhysAddr, nrPages: number): void {
    this.#setEncryption("setMemoryEncrypted", phys, nrPages, true);
  }

  /** The map in /proc/iomem format: `00000000-7fffffff : System RAM`. */
  iomem(): string {
    return this.#table.list
      .map((r) => `${r.base.toString(16).padStart(8, "0")}-${(r.end - 1).toString(16).padStart(8, "0")} : ${r.info.name}${r.info.owner === undefined ? "" : ` (${r.info.owner})`}`)
      .join("\n");
  }

  /** ZoneDeviceHost: where ZONE_DEVICE pages may go (keyed by a package-private symbol). */
  [kCheckZoneDeviceRange](phys: number, size: number, kind: PageRangeKind): void {
    const end = phys + size;
    if (kind === "p2pdma") {
      const r = this.#table.at(this.#table.indexOf(phys));
      if (r?.info.kind !== "mmio" || end > r.end) {
        throw new AddressError("phys", phys, `p2pdma pages inside one MMIO region (a BAR): [${hex(phys)}, ${hex(end)}) is not (addZoneDevice)`);
      }
    } else {
      const clash = this.#table.overlapping(phys, end);
      if (clash !== undefined) throw new RegionOverlapError(phys, size, `${describe(clash)}: device-private pages need a hole in the physical map`);
    }
  }

  #setEncryption(fn: string, phys: number, nrPages: number, encrypted: boolean): void {
    checkNat("phys", phys);
    if (phys % PAGE_SIZE !== 0) throw new AddressError("phys", phys, `a page-aligned address (${fn})`);
    checkNat("nrPages", nrPages);
    if (!Number.isSafeInteger(phys + nrPages * PAGE_SIZE)) throw new AddressError("nrPages", nrPages, `a page count that keeps the end address safe (${fn})`);
    const pfn = phys / PAGE_SIZE;
    const missing = this.pages[kFirstMissing](pfn, nrPages, RangeKind.RAM);
    if (missing >= 0) throw new UnmappedAddressError(missing * PAGE_SIZE, `${fn}: only RAM pages can change encryption state`);
    if (!this.confidential || nrPages === 0) return;
    this.pages[kApplyFlags](pfn, nrPages, encrypted ? PageFlag.ENCRYPTED : 0, encrypted ? 0 : PageFlag.ENCRYPTED);
  }

  #allRam(phys: number, len: number): boolean {
    const end = phys + len;
    let i = this.#table.indexOf(phys);
    for (;;) {
      const r = this.#table.at(i);
      if (r?.info.kind !== "ram") return false;
      if (end <= r.end) return true;
      const next = this.#table.at(++i);
      if (next?.base !== r.end) return false;
    }
  }

  /**
   * Refuses [phys, phys + len) unless every byte lies in RAM or backed MMIO; returns the index of the
   * region that holds `phys` (-1 for an empty range).
   */
  #check(fn: AccessFn, phys: number, len: number): number {
    checkRange("phys", phys, len);
    if (len === 0) return -1;
    const end = phys + len;
    const first = this.#table.indexOf(phys);
    let i = first;
    for (;;) {
      const r = this.#table.at(i);
      if (r === undefined) throw new UnmappedAddressError(phys, fn);
      if (r.store === undefined) throw new MmioNoBackingError(Math.max(phys, r.base), r.info.name, fn);
      if (end <= r.end) break;
      const next = this.#table.at(i + 1);
      if (next?.base !== r.end) throw new UnmappedAddressError(r.end, fn);
      i++;
    }
    return first;
  }

  /**
   * Any access that misses the last region or spans regions: first walk the whole range and refuse it if
   * any byte is in a hole or in MMIO without backing, then move the bytes region by region.
   */
  #slow(fn: AccessFn, phys: number, len: number, buf: Uint8Array | undefined, value: number): void {
    const first = this.#check(fn, phys, len);
    if (len === 0) return;
    const end = phys + len;
    const counters = this.trace.counters;
    let materialised = 0;
    for (let j = first, at = phys; at < end; j++) {
      const r = this.#table.at(j);
      if (!isBacked(r)) throw new Error("PhysicalMemory: region table changed during an access (internal inconsistency)");
      const store = r.store;
      const n = Math.min(end, r.end) - at;
      const off = at - r.base;
      const pos = at - phys;
      const before = store.materialisedPages;
      if (buf === undefined) store.fill(off, n, value);
      else if (fn === "write") store.write(off, n === len ? buf : buf.subarray(pos, pos + n));
      else store.readInto(off, n === len ? buf : buf.subarray(pos, pos + n));
      materialised += store.materialisedPages - before;
      this.#last = r;
      at += n;
    }
    if (materialised !== 0) counters.add(Counter.MemPagesMaterialised, materialised);
    counters.add(fn === "read" || fn === "readInto" ? Counter.MemReadBytes : Counter.MemWriteBytes, len);
  }
}

interface BackedRegion extends Region {
  readonly store: SparseStore;
}

function isBacked(r: Region | undefined): r is BackedRegion {
  return r?.store !== undefined;
}

/** Array.isArray without widening the element type to any (options may come from plain JSON). */
function isArray(value: unknown): boolean {
  return Array.isArray(value);
}

function makeRegion(kind: "ram" | "mmio", base: number, size: number, name: string, owner: string | undefined, store: SparseStore | undefined): Region {
  const info: RegionInfo = Object.freeze({ kind, base: base as PhysAddr, size, name, owner });
  return { info, base, end: base + size, store };
}

function describe(r: Region): string {
  return `${r.info.kind} region "${r.info.name}" [${hex(r.base)}, ${hex(r.end)})`;
}

function checkPageAlignedRange(what: string, base: number, size: number): void {
  checkRange(`${what}.base`, base, size);
  if (base % PAGE_SIZE !== 0) throw new AddressError(`${what}.base`, base, "a page-aligned address");
  if (size === 0 || size % PAGE_SIZE !== 0) throw new AddressError(`${what}.size`, size, "a non-zero multiple of PAGE_SIZE (4096)");
}

/** `ranges` minus `holes`, both in pfns; the result is sorted and disjoint. */
function subtract(
  ranges: readonly { startPfn: number; endPfn: number }[],
  holes: readonly { startPfn: number; endPfn: number }[],
): { startPfn: number; endPfn: number }[] {
  let out = ranges.map((r) => ({ ...r }));
  for (const h of holes) {
    const next: { startPfn: number; endPfn: number }[] = [];
    for (const r of out) {
      if (h.endPfn <= r.startPfn || r.endPfn <= h.startPfn) next.push(r);
      else {
        if (r.startPfn < h.startPfn) next.push({ startPfn: r.startPfn, endPfn: h.startPfn });
        if (h.endPfn < r.endPfn) next.push({ startPfn: h.endPfn, endPfn: r.endPfn });
      }
    }
    out = next;
  }
  return out;
}
