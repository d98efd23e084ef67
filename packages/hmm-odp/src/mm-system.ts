import type { DmaKernel } from "@dmasim/dma";
import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import type { PhysicalMemory } from "@dmasim/memory";
import { hex } from "@dmasim/trace";
import { HmmErrno } from "./constants.js";
import { HmmInputError, HmmStateError } from "./errors.js";
import type { Mm } from "./mm.js";
import type { DevPagemap } from "./pagemap.js";
import { kAddPagemap, kClearLazyFree, kFileInUse, kFilePage, kMarkLazyFree, kNextPid, kRemovePagemap, kSwapFree, kSwapOutPage, kSwapRead, kSwapReadCached, kSwapWrite } from "./internal.js";

/** Pages taken from the physical allocator at once: 2 MiB, aligned, so a THP can take a whole chunk. */
const CHUNK_PAGES = 512;
/** Refcount blocks: one Uint16Array per 512 page frames, made on first use. */
const REF_SHIFT = 9;
const REF_MASK = (1 << REF_SHIFT) - 1;

/** Counters of the mm model (the kernel's vmstat events it mirrors). */
export interface MmStats {
  /** handle_mm_fault calls that resolved without I/O (zero page, new page, COW, page cache hit). */
  minorFaults: number;
  /** handle_mm_fault calls that read from swap. */
  majorFaults: number;
  /** Pages copied on a write to a copy-on-write mapping. */
  cowCopies: number;
  /** Pages written to swap and unmapped. */
  swapOuts: number;
  /** Pages migrated (to or from device memory, or for compaction). */
  migrations: number;
  /** Transparent huge pages split into base pages. */
  thpSplits: number;
  /** Invalidations fired through mmu notifiers (one per range). */
  invalidations: number;
}

/**
 * A shared object pages are cached for: a file (page cache) or the shmem object behind a MAP_SHARED
 * anonymous mapping. Page `i` is `pages[i] - 1`, 0 when not cached.
 */
export class MmFile {
  /** A name for messages (the file's path, or the shmem object). */
  readonly name: string;
  /** Bytes in the object. */
  readonly size: number;
  /** The page cache: page `i` is frame `pages[i] - 1`, 0 when not cached. */
  readonly pages: Float64Array;
  /** Pages written through a shared mapping since the last writeback. */
  readonly dirty: Uint8Array;
  /** Made by `MmSystem.createFile` (`.` exports the class as a type only). */
  constructor(name: string, size: number) {
    this.name = name;
    this.size = size;
    const n = Math.ceil(size / PAGE_SIZE);
    this.pages = new Float64Array(n);
    this.dirty = new Uint8Array(n);
  }
}

/**
 * The kernel's memory-management core shared by every process: the page allocator front end (2 MiB
 * chunks taken from @dmasim/memory and handed out page by page, like the per-CPU page lists), page
 * reference counts (struct page's _refcount for the pages the mm owns), the zero page, swap space, the
 * page cache of files, and the device page maps. Processes (`Mm`) are created from it.
 */
export class MmSystem {
  /** The DMA kernel devices map the processes' pages through. */
  readonly kernel: DmaKernel;
  /** The physical memory pages come from. */
  readonly memory: PhysicalMemory;
  /** What the mm core did: faults, COW copies, swap-outs, migrations, THP splits, invalidations. */
  readonly stats: MmStats = { minorFaults: 0, majorFaults: 0, cowCopies: 0, swapOuts: 0, migrations: 0, thpSplits: 0, invalidations: 0 };
  /** The shared zero page. */
  readonly zeroPfn: number;
  readonly #ref: (Uint16Array | undefined)[] = [];
  /** Freed order-0 pages, reused first (already zeroed). */
  #free: number[] = [];
  #chunkNext = 0;
  #chunkEnd = 0;
  readonly #swap = new Map<number, Uint8Array>();
  #nextSwap = 1;
  /** The swap cache: a page read in from swap whose slot still holds its bytes (page → slot). */
  readonly #swapCache = new Map<number, number>();
  /** PG_dirty of swap-cache pages: the slot is stale and reclaim must write the page again. */
  readonly #swapCacheDirty = new Set<number>();
  readonly #pgmaps: DevPagemap[] = [];
  /** The MEMORY_DEVICE_COHERENT ones: their pages are reference-counted by their pagemap. */
  readonly #coherent: DevPagemap[] = [];
  #nextPid = 1;
  /** Live processes (to know when a shmem object has no mapping left). */
  readonly mms = new Set<Mm>();
  /** Pages MADV_FREE made lazily freeable (!PG_swapbacked); a write through a pte takes one back. */
  readonly #lazyFree = new Set<number>();
  /** Pin counts of pages pinned by pinPage. */
  readonly #pins = new Map<number, number>();
  /** Pages the mm holds (refcount > 0), zero page excluded. */
  #inUse = 0;

  constructor(kernel: DmaKernel) {
    this.kernel = kernel;
    this.memory = kernel.memory;
    this.zeroPfn = this.memory.allocator.allocPages(1) / PAGE_SIZE;
    this.memory.fill(unsafePhysAddr(this.zeroPfn * PAGE_SIZE), PAGE_SIZE, 0);
  }

  /** Reached through `@dmasim/hmm-odp/internal`. A process id for a new mm. */
  [kNextPid](): number {
    return this.#nextPid++;
  }

  /** Pages the mm model holds (referenced by a page table, the page cache or a device). */
  get pagesInUse(): number {
    return this.#inUse;
  }

  /** Swap slots holding a page. */
  get swapSlotsInUse(): number {
    return this.#swap.size;
  }

  /** alloc_page(GFP_HIGHUSER | __GFP_ZERO): a zeroed page with refcount 1. */
  allocPage(): number {
    let pfn = this.#free.pop();
    if (pfn === undefined) {
      if (this.#chunkNext === this.#chunkEnd) this.#newChunk();
      pfn = this.#chunkNext++;
    }
    this.#setRef(pfn, 1);
    this.#inUse++;
    return pfn;
  }

  /** A zeroed, naturally aligned block of 2^order pages (a THP), each page with refcount 1. */
  allocHuge(order: number): number {
    const n = 1 << order;
    const phys = this.#allocRaw(n, n);
    const pfn = phys / PAGE_SIZE;
    for (let i = 0; i < n; i++) this.#setRef(pfn + i, 1);
    this.#inUse += n;
    return pfn;
  }

  #allocRaw(count: number, align: number): number {
    let phys: number;
    try {
      phys = this.memory.allocator.allocPages(count, { align });
    } catch (e) {
      throw new HmmStateError("ENOMEM", `out of memory: ${count} pages for the mm model (${(e as Error).message})`);
    }
    // A page from the allocator may hold a previous user's bytes; the mm hands out zeroed pages.
    this.memory.fill(unsafePhysAddr(phys), count * PAGE_SIZE, 0);
    return phys;
  }

  #newChunk(): void {
    const pfn = this.#allocRaw(CHUNK_PAGES, CHUNK_PAGES) / PAGE_SIZE;
    this.#chunkNext = pfn;
    this.#chunkEnd = pfn + CHUNK_PAGES;
  }

  /**
   * page_ref_count (0 for a page the mm does not hold). A coherent device page is mapped by normal ptes,
   * so the mm's get/put reach it too; its count lives in its pagemap.
   */
  refCount(pfn: number): number {
    const block = this.#ref[pfn >>> REF_SHIFT];
    const n = block === undefined ? 0 : (block[pfn & REF_MASK] ?? 0);
    if (n !== 0 || this.#coherent.length === 0) return n;
    return this.coherentPagemapOf(pfn)?.refCount(pfn) ?? 0;
  }

  /** The MEMORY_DEVICE_COHERENT pagemap of `pfn` (is_device_coherent_page), or undefined. */
  coherentPagemapOf(pfn: number): DevPagemap | undefined {
    for (const p of this.#coherent) if (pfn >= p.startPfn && pfn < p.startPfn + p.nrPages) return p;
    return undefined;
  }

  /** #ref's own count (RAM the mm handed out), without the coherent lookup. */
  #ownRef(pfn: number): number {
    const block = this.#ref[pfn >>> REF_SHIFT];
    return block === undefined ? 0 : (block[pfn & REF_MASK] ?? 0);
  }

  #setRef(pfn: number, n: number): void {
    const b = pfn >>> REF_SHIFT;
    let block = this.#ref[b];
    if (block === undefined) {
      block = new Uint16Array(1 << REF_SHIFT);
      this.#ref[b] = block;
    }
    block[pfn & REF_MASK] = n;
  }

  /** True for a page the mm reference-counts (RAM it handed out or a coherent device page; not the zero page, BARs or device-private memory). */
  managed(pfn: number): boolean {
    return this.refCount(pfn) > 0;
  }

  /** get_page. */
  getPage(pfn: number): void {
    const n = this.#ownRef(pfn);
    if (n === 0) {
      const cp = this.#coherent.length === 0 ? undefined : this.coherentPagemapOf(pfn);
      if (cp !== undefined && cp.refCount(pfn) > 0) cp.getPage(pfn);
      return;
    }
    if (n === 0xffff) throw new HmmStateError("EOVERFLOW", `page ${hex(pfn)}: reference count overflow`);
    this.#setRef(pfn, n + 1);
  }

  /** put_page: the last reference frees the page (zeroed, back to the free list). */
  putPage(pfn: number): void {
    const n = this.#ownRef(pfn);
    if (n === 0) {
      // The last put of a coherent device page frees it to its device (page_free).
      const cp = this.#coherent.length === 0 ? undefined : this.coherentPagemapOf(pfn);
      if (cp !== undefined && cp.refCount(pfn) > 0) cp.putPage(pfn);
      return;
    }
    this.#setRef(pfn, n - 1);
    if (n === 1) {
      this.#dropSwapCache(pfn, true);
      this.#lazyFree.delete(pfn);
      this.#inUse--;
      this.memory.fill(unsafePhysAddr(pfn * PAGE_SIZE), PAGE_SIZE, 0);
      this.#free.push(pfn);
    }
  }

  /**
   * pin_user_pages (FOLL_PIN): a reference that also marks the page maybe-DMA-pinned, so fork copies a
   * private anonymous page for the child instead of sharing it copy-on-write (page_maybe_dma_pinned).
   */
  pinPage(pfn: number): void {
    if (!this.managed(pfn)) return;
    this.getPage(pfn);
    this.#pins.set(pfn, (this.#pins.get(pfn) ?? 0) + 1);
  }

  /** unpin_user_page. */
  unpinPage(pfn: number): void {
    const n = this.#pins.get(pfn) ?? 0;
    if (n === 0) return;
    if (n === 1) this.#pins.delete(pfn);
    else this.#pins.set(pfn, n - 1);
    this.putPage(pfn);
  }

  /** page_maybe_dma_pinned. */
  maybeDmaPinned(pfn: number): boolean {
    return this.#pins.has(pfn);
  }

  /** copy_user_highpage. */
  copyPage(dstPfn: number, srcPfn: number): void {
    // Store to store, no intermediate buffer (copy_highpage); same byte counters as a read and a write.
    this.memory.copy(unsafePhysAddr(dstPfn * PAGE_SIZE), unsafePhysAddr(srcPfn * PAGE_SIZE), PAGE_SIZE);
  }

  /** Reached through `@dmasim/hmm-odp/internal`. Swap-out of a page's bytes; returns the slot. */
  [kSwapWrite](pfn: number): number {
    const slot = this.#nextSwap++;
    this.#swap.set(slot, this.memory.read(unsafePhysAddr(pfn * PAGE_SIZE), PAGE_SIZE));
    return slot;
  }

  /** Reached through `@dmasim/hmm-odp/internal`. Swap-in: the bytes of a slot into a page; the slot is freed when `free`. */
  [kSwapRead](slot: number, pfn: number, free: boolean): void {
    const bytes = this.#swap.get(slot);
    if (bytes === undefined) throw new HmmStateError("EIO", `swap slot ${slot} holds no page`);
    this.memory.write(unsafePhysAddr(pfn * PAGE_SIZE), bytes);
    if (free) this.#swap.delete(slot);
  }

  /** Reached through `@dmasim/hmm-odp/internal`. Drops a swap slot (zap of a swap entry). */
  [kSwapFree](slot: number): void {
    this.#swap.delete(slot);
  }

  /** Reached through `@dmasim/hmm-odp/internal`. Swap-in on a read fault (do_swap_page): the page stays in the swap cache, clean, its slot kept. */
  [kSwapReadCached](slot: number, pfn: number): void {
    this[kSwapRead](slot, pfn, false);
    this.#swapCache.set(pfn, slot);
  }

  /** Reached through `@dmasim/hmm-odp/internal`. MADV_FREE of a page: lazily freeable, and out of the swap cache (its slot freed). */
  [kMarkLazyFree](pfn: number): void {
    this.#dropSwapCache(pfn, true);
    this.#lazyFree.add(pfn);
  }

  /** True for a page MADV_FREE made lazily freeable and no write has taken back since. */
  lazyFree(pfn: number): boolean {
    return this.#lazyFree.has(pfn);
  }

  /** Reached through `@dmasim/hmm-odp/internal`. A write through a pte: the page is needed again (folio_mark_dirty sets swapbacked back). */
  [kClearLazyFree](pfn: number): void {
    if (this.#lazyFree.size !== 0) this.#lazyFree.delete(pfn);
  }

  /** True when `pfn` is in the swap cache. */
  inSwapCache(pfn: number): boolean {
    return this.#swapCache.has(pfn);
  }

  /**
   * set_page_dirty (folio_mark_dirty): the page was written other than through a dirty pte (a device
   * write, say), so a copy in swap is stale and reclaim must write it again. Drivers that let a device
   * write pages call it when they unmap them (ib_umem_odp does); it matters for pages in the swap cache.
   */
  setPageDirty(pfn: number): void {
    if (this.#swapCache.has(pfn)) this.#swapCacheDirty.add(pfn);
  }

  /**
   * Reached through `@dmasim/hmm-odp/internal`. Reclaim's pageout of a page about to be unmapped (shrink_folio_list): a clean swap-cache
   * page is dropped as its slot is up to date; a dirty one or one not in the swap cache is written. Returns
   * the slot that now holds the page's bytes; the page leaves the swap cache.
   */
  [kSwapOutPage](pfn: number): number {
    const slot = this.#swapCache.get(pfn);
    const dirty = this.#swapCacheDirty.has(pfn);
    this.#dropSwapCache(pfn, false);
    if (slot === undefined) return this[kSwapWrite](pfn);
    if (dirty) this.#swap.set(slot, this.memory.read(unsafePhysAddr(pfn * PAGE_SIZE), PAGE_SIZE));
    return slot;
  }

  /** The page leaves the swap cache; its slot is freed unless a swap entry is about to take it over. */
  #dropSwapCache(pfn: number, freeSlot: boolean): void {
    const slot = this.#swapCache.get(pfn);
    if (slot === undefined) return;
    this.#swapCache.delete(pfn);
    this.#swapCacheDirty.delete(pfn);
    if (freeSlot) this.#swap.delete(slot);
  }

  /** A file of `size` bytes with `content` at offset 0 (a tmpfs file: its page cache is its storage). */
  createFile(name: string, size: number, content?: Uint8Array): MmFile {
    if (!Number.isSafeInteger(size) || size <= 0) throw new HmmInputError("createFile", "size", size, "a positive number of bytes");
    if (content !== undefined && content.length > size) throw new HmmInputError("createFile", "content", content, `at most size (${size}) bytes`);
    const f = new MmFile(name, size);
    if (content !== undefined) this.fileWrite(f, 0, content);
    return f;
  }

  /** Reached through `@dmasim/hmm-odp/internal`: find_get_page / shmem_get_folio: the page cache page of `index`, created on demand. */
  [kFilePage](f: MmFile, index: number): number {
    const cur = f.pages[index] ?? 0;
    if (cur !== 0) return cur - 1;
    const pfn = this.allocPage();
    f.pages[index] = pfn + 1;
    return pfn;
  }

  /** pwrite to a file (through its page cache). */
  fileWrite(f: MmFile, offset: number, bytes: Uint8Array): void {
    this.#checkFileRange("fileWrite", f, offset, bytes.length);
    let pos = 0;
    while (pos < bytes.length) {
      const at = offset + pos;
      const index = Math.floor(at / PAGE_SIZE);
      const n = Math.min(PAGE_SIZE - (at % PAGE_SIZE), bytes.length - pos);
      this.memory.write(unsafePhysAddr(this[kFilePage](f, index) * PAGE_SIZE + (at % PAGE_SIZE)), bytes.subarray(pos, pos + n));
      f.dirty[index] = 1;
      pos += n;
    }
  }

  /** pread from a file (through its page cache). */
  fileRead(f: MmFile, offset: number, len: number): Uint8Array {
    this.#checkFileRange("fileRead", f, offset, len);
    const out = new Uint8Array(len);
    let pos = 0;
    while (pos < len) {
      const at = offset + pos;
      const index = Math.floor(at / PAGE_SIZE);
      const n = Math.min(PAGE_SIZE - (at % PAGE_SIZE), len - pos);
      const cached = f.pages[index] ?? 0;
      if (cached !== 0) out.set(this.memory.read(unsafePhysAddr((cached - 1) * PAGE_SIZE + (at % PAGE_SIZE)), n), pos);
      pos += n;
    }
    return out;
  }

  #checkFileRange(fn: string, f: MmFile, offset: number, len: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + len > f.size) {
      throw new HmmInputError(fn, "offset", offset, `an offset with offset + ${len} <= the file size ${f.size}`);
    }
  }

  /** Releases a file's page cache (its last user is gone). */
  dropFile(f: MmFile): void {
    for (let i = 0; i < f.pages.length; i++) {
      const cached = f.pages[i] ?? 0;
      if (cached !== 0) this.putPage(cached - 1);
      f.pages[i] = 0;
    }
  }

  /** Reached through `@dmasim/hmm-odp/internal`. True when an mm other than `except` maps `f`. */
  [kFileInUse](f: MmFile, except: Mm): boolean {
    for (const mm of this.mms) if (mm !== except && mm.vmas.some((v) => v.file === f)) return true;
    return false;
  }

  /** Reached through `@dmasim/hmm-odp/internal`: memremap_pages bookkeeping. */
  [kAddPagemap](p: DevPagemap): void {
    this.#pgmaps.push(p);
    if (p.coherent) this.#coherent.push(p);
  }

  /** Reached through `@dmasim/hmm-odp/internal`: memunmap_pages bookkeeping. */
  [kRemovePagemap](p: DevPagemap): void {
    const i = this.#pgmaps.indexOf(p);
    if (i >= 0) this.#pgmaps.splice(i, 1);
    const c = this.#coherent.indexOf(p);
    if (c >= 0) this.#coherent.splice(c, 1);
  }

  /** page_pgmap for a device page frame (device-private or coherent), or undefined. */
  pagemapOf(pfn: number): DevPagemap | undefined {
    for (const p of this.#pgmaps) if (pfn >= p.startPfn && pfn < p.startPfn + p.nrPages) return p;
    return undefined;
  }

  /** The errno name for a negative return. */
  static errnoName(ret: number): string {
    for (const [k, v] of Object.entries(HmmErrno)) if (v === -ret) return `-${k}`;
    return String(ret);
  }
}
