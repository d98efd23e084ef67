import type { PhysicalMemory } from "@dmasim/memory";
import { hex, type Counters } from "@dmasim/trace";
import { Counter } from "../counters.js";
import { CACHELINE_SIZE, DmaDirection } from "../constants.js";
import { checkDir } from "../validate.js";
import { CpuCacheError, CpuCacheInputError } from "./errors.js";
import { LineStore } from "./line-store.js";
import type { PhysAddr } from "@dmasim/memory";

/** Geometry of the CPU cache model: line size and how many lines it holds before evicting. */
export interface CpuCacheOptions {
  /** Cache line size in bytes, a power of two from 16 to 4096. Default 64 (ARCH_DMA_MINALIGN on most arm64). */
  lineSize?: number;
  /**
   * Lines the cache holds before it evicts the least recently used one (writing it back when dirty).
   * Default unbounded: nothing is ever evicted, so a missing sync always shows.
   */
  capacity?: number;
}

/**
 * The CPU data cache as DMA sees it, for devices that do not snoop it (non-coherent DMA, typical of
 * arm64 SoCs). CPU writes stay in dirty lines and reach memory only when cleaned or evicted; CPU reads
 * are served from lines, filling clean lines from memory on a miss; the device reads and writes memory
 * directly. The arch hooks do what arch/arm64/mm/dma-mapping.c does with the cache maintenance of
 * arch/arm64/mm/cache.S, so a driver that skips dma_sync_* gets exactly the stale bytes real hardware
 * would give it.
 */
export class CpuCache {
  /** The memory behind the cache: misses fill from it, cleans and evictions write back to it. */
  readonly memory: PhysicalMemory;
  /** Cache line size in bytes (the unit of cleans and invalidates); default 64. */
  readonly lineSize: number;
  /** Lines held before the least recently used one is evicted; Infinity when unbounded (the default). */
  readonly capacity: number;
  readonly #store: LineStore;
  readonly #counters: Counters;
  #evictions = 0;

  constructor(memory: PhysicalMemory, options: CpuCacheOptions = {}) {
    memory.trace.counters.declare(Counter);
    const lineSize = options.lineSize ?? CACHELINE_SIZE;
    if (!Number.isSafeInteger(lineSize) || lineSize < 16 || lineSize > 4096 || (lineSize & (lineSize - 1)) !== 0) {
      throw new CpuCacheInputError("CpuCache", "lineSize", lineSize, "a power of two from 16 to 4096");
    }
    const capacity = options.capacity ?? Infinity;
    if (capacity !== Infinity && (!Number.isSafeInteger(capacity) || capacity < 1)) {
      throw new CpuCacheInputError("CpuCache", "capacity", capacity, "a positive number of lines or Infinity");
    }
    this.memory = memory;
    this.lineSize = lineSize;
    this.capacity = capacity;
    this.#store = new LineStore(lineSize);
    this.#counters = memory.trace.counters;
  }

  /** Lines currently cached (clean or dirty). */
  get lines(): number {
    return this.#store.size;
  }

  /** Lines holding CPU writes not yet written back to memory. */
  get dirtyLines(): number {
    return this.#store.dirtyCount;
  }

  /** Lines pushed out by the capacity limit (dirty ones were written back). */
  get evictions(): number {
    return this.#evictions;
  }

  /** True when the line holding `phys` is in the cache, clean or dirty. */
  isCached(phys: PhysAddr): boolean {
    return this.#store.slotOf(Math.floor(phys / this.lineSize)) >= 0;
  }

  /** True when the line holding `phys` is cached and holds CPU writes memory does not have yet. */
  isDirty(phys: PhysAddr): boolean {
    const slot = this.#store.slotOf(Math.floor(phys / this.lineSize));
    return slot >= 0 && this.#store.isDirty(slot);
  }

  /** A CPU store: the bytes land in cache lines (allocated and filled on a miss) marked dirty; memory is untouched. */
  cpuWrite(phys: PhysAddr, bytes: Uint8Array): void {
    this.#checkCached("cpuWrite", phys, bytes.length);
    const ls = this.lineSize;
    const store = this.#store;
    let done = 0;
    while (done < bytes.length) {
      const addr = phys + done;
      const line = Math.floor(addr / ls);
      const off = addr - line * ls;
      const n = Math.min(ls - off, bytes.length - done);
      const slot = this.#lookupOrFill(line);
      store.view(slot).set(bytes.subarray(done, done + n), off);
      store.setDirty(slot, true);
      done += n;
    }
  }

  /** A CPU load: cached lines where present (clean or dirty), memory elsewhere, filling clean lines. */
  cpuRead(phys: PhysAddr, len: number): Uint8Array {
    this.#checkCached("cpuRead", phys, len);
    const out = new Uint8Array(len);
    const ls = this.lineSize;
    const store = this.#store;
    let done = 0;
    while (done < len) {
      const addr = phys + done;
      const line = Math.floor(addr / ls);
      const off = addr - line * ls;
      const n = Math.min(ls - off, len - done);
      const slot = this.#lookupOrFill(line);
      out.set(store.view(slot).subarray(off, off + n), done);
      done += n;
    }
    return out;
  }

  /**
   * arch_sync_dma_for_device(): arm64 cleans (writes back dirty lines, keeping them valid) for every
   * direction, DMA_FROM_DEVICE included. It used to invalidate there, but that throws away CPU data in
   * lines the device might not overwrite; cleaning is always safe, and the invalidate that matters happens
   * in arch_sync_dma_for_cpu() after the transfer (arch/arm64/mm/dma-mapping.c, commit "arm64: mm: Don't
   * invalidate FROM_DEVICE buffers at start of DMA transfer").
   */
  archSyncDmaForDevice(phys: PhysAddr, size: number, dir: DmaDirection): void {
    this.#checkSync("archSyncDmaForDevice", phys, size, dir);
    this.#forEachCachedLine(phys, size, (slot) => {
      this.#writeBack(slot);
    });
  }

  /**
   * arch_sync_dma_for_cpu(): nothing for DMA_TO_DEVICE (the device only read); otherwise dcache_inval_poc
   * over the range, so the next CPU read fetches what the device wrote. Lines wholly inside the range are
   * invalidated and any dirty data in them is lost (the CPU had no business writing a buffer the device
   * owned). A line only partly inside is cleaned and then invalidated as a whole: the cache cannot drop
   * half a line, and writing it back first saves the neighbour's bytes but also writes the CPU's stale copy
   * of the buffer's part over what the device put there. That is why dma-debug reports active mappings
   * that share a cache line (check_for_overlapping_cachelines in kernel/dma/debug.c) and why DMA buffers
   * are ARCH_DMA_MINALIGN aligned.
   */
  archSyncDmaForCpu(phys: PhysAddr, size: number, dir: DmaDirection): void {
    this.#checkSync("archSyncDmaForCpu", phys, size, dir);
    if (dir === DmaDirection.TO_DEVICE || size === 0) return;
    this.#invalidateRange(phys, size);
  }

  /**
   * A coherent device reads [phys, phys + len): the interconnect supplies dirty lines, modelled as writing
   * them back to memory before the read is served (they stay cached, now clean).
   */
  snoopDeviceRead(phys: PhysAddr, len: number): void {
    this.#checkRange("snoopDeviceRead", phys, len);
    this.#forEachCachedLine(phys, len, (slot) => {
      this.#writeBack(slot);
    });
  }

  /**
   * A coherent device writes [phys, phys + len): overlapping lines are invalidated so the CPU sees the new
   * bytes. Call it before the device's bytes reach memory: a dirty line only partly covered is written back
   * first so the CPU's bytes outside the write survive, as a coherent interconnect would merge them.
   */
  snoopDeviceWrite(phys: PhysAddr, len: number): void {
    this.#checkRange("snoopDeviceWrite", phys, len);
    if (len === 0) return;
    this.#invalidateRange(phys, len);
  }

  /** Write back every dirty line and drop every line (a whole-cache clean and invalidate). */
  flushAll(): void {
    const store = this.#store;
    for (const line of store.lines()) {
      const slot = store.slotOf(line);
      this.#writeBack(slot);
      store.remove(slot);
      this.#counters.add(Counter.CacheLinesInvalidated);
    }
  }

  /** Drop lines in the range; lines that stick out of it are cleaned first (dcache_inval_poc's civac). */
  #invalidateRange(phys: number, size: number): void {
    const ls = this.lineSize;
    const firstPartial = phys % ls !== 0 ? Math.floor(phys / ls) : -1;
    const lastPartial = (phys + size) % ls !== 0 ? Math.floor((phys + size - 1) / ls) : -1;
    const store = this.#store;
    this.#forEachCachedLine(phys, size, (slot, line) => {
      if (line === firstPartial || line === lastPartial) this.#writeBack(slot);
      store.remove(slot);
      this.#counters.add(Counter.CacheLinesInvalidated);
    });
  }

  /** Calls fn for every cached line overlapping the range: O(lines in range), or O(cached lines) if fewer. */
  #forEachCachedLine(phys: number, size: number, fn: (slot: number, line: number) => void): void {
    if (size === 0) return;
    const ls = this.lineSize;
    const store = this.#store;
    const first = Math.floor(phys / ls);
    const last = Math.floor((phys + size - 1) / ls);
    if (last - first + 1 <= store.size) {
      for (let line = first; line <= last; line++) {
        const slot = store.slotOf(line);
        if (slot >= 0) fn(slot, line);
      }
      return;
    }
    for (const line of store.lines()) {
      if (line < first || line > last) continue;
      fn(store.slotOf(line), line);
    }
  }

  #lookupOrFill(line: number): number {
    const store = this.#store;
    let slot = store.slotOf(line);
    if (slot >= 0) {
      store.touch(slot);
      return slot;
    }
    if (store.size >= this.capacity) this.#evict();
    slot = store.insert(line);
    this.memory.readInto((line * this.lineSize) as PhysAddr, store.view(slot));
    return slot;
  }

  /**
   * Capacity eviction of the least recently used line, written back if dirty. This is what makes real
   * missing-sync bugs intermittent: whether the device sees the CPU's data depends on whether the line
   * happened to be evicted before the transfer.
   */
  #evict(): void {
    const store = this.#store;
    const slot = store.lruSlot;
    if (slot < 0) return;
    this.#writeBack(slot);
    store.remove(slot);
    this.#evictions++;
  }

  #writeBack(slot: number): void {
    const store = this.#store;
    if (!store.isDirty(slot)) return;
    this.memory.write((store.lineOf(slot) * this.lineSize) as PhysAddr, store.view(slot));
    store.setDirty(slot, false);
    this.#counters.add(Counter.CacheLinesWrittenBack);
  }

  #checkRange(fn: string, phys: number, len: number): void {
    if (!Number.isSafeInteger(phys) || phys < 0) {
      throw new CpuCacheInputError(fn, "phys", phys, "a physical address (safe integer >= 0)");
    }
    if (!Number.isSafeInteger(len) || len < 0 || !Number.isSafeInteger(phys + len)) {
      throw new CpuCacheInputError(fn, "length", len, "a number of bytes >= 0");
    }
  }

  #checkCached(fn: string, phys: number, len: number): void {
    this.#checkRange(fn, phys, len);
    if (len === 0) return;
    const ls = this.lineSize;
    const start = Math.floor(phys / ls) * ls;
    const end = Math.ceil((phys + len) / ls) * ls;
    if (!this.memory.isRam(start as PhysAddr, end - start)) {
      throw new CpuCacheError("EFAULT", `${fn}: ${hex(phys)} + ${len} bytes is not all RAM: only RAM is cached`);
    }
  }

  #checkSync(fn: string, phys: number, size: number, dir: number): void {
    this.#checkRange(fn, phys, size);
    checkDir(fn, dir);
    if (dir === DmaDirection.NONE) throw new CpuCacheError("EINVAL", `${fn}: dir = DMA_NONE is invalid for cache maintenance`);
  }
}
