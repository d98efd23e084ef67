import { Counter } from "../counters.js";
import type { DmaEvent } from "../events.js";
import type { Trace } from "@dmasim/trace";
import {
  CACHELINE_SIZE,
  DMA_ATTR_DEBUGGING_IGNORE_CACHELINES,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_ATTR_SKIP_CPU_SYNC,
  DmaDirection,
  dmaDirectionName,
} from "../constants.js";
import { hex, hex64 } from "@dmasim/trace";
import { ActiveCachelines, Overlap } from "./cachelines.js";
import { DmaDebugError } from "./errors.js";
import type { DmaDebugCheck, DmaDebugReport } from "./errors.js";

export type DebugMode = "throw" | "collect" | "off";

/** dma-debug's entry types (type2name in kernel/dma/debug.c). */
export type DebugEntryType = "single" | "phy" | "scatter-gather" | "coherent";

/** One live mapping as dma-debug tracks it (struct dma_debug_entry). */
export interface DebugEntry {
  readonly type: DebugEntryType;
  readonly device: string;
  readonly dmaAddr: number;
  readonly size: number;
  readonly phys: number;
  readonly dir: DmaDirection;
  /** For sg entries: the nents passed to map, and what map returned. */
  readonly sgCount: number;
  readonly sgMappedEnts: number;
  /** dma_mapping_error() was called on this address since it was mapped. */
  mapErrChecked: boolean;
  /**
   * The cacheline ranges this entry holds in the active-cacheline table, as [first, last] pairs (empty when
   * it is not tracked), and whether it was inserted as cache-clean.
   */
  clLines: readonly number[];
  clClean: boolean;
}

/** A finding of checkMap held back until the mapping is known to exist (see checkMap). */
export interface DebugFinding {
  readonly check: DmaDebugCheck;
  readonly message: string;
}

/** The checker's view of the kernel configuration (fixed when the kernel is created). */
export interface DebugCheckerOptions {
  /**
   * Report overlapping cachelines at all. add_dma_entry stays quiet when dma_get_cache_alignment() is
   * below L1_CACHE_BYTES, and with CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC while swiotlb is active (small
   * kmalloc buffers that could share a line are bounced). Default true.
   */
  readonly reportCachelineOverlap?: boolean;
}

const NO_LINES: readonly number[] = [];
const CACHE_CLEAN = DMA_ATTR_DEBUGGING_IGNORE_CACHELINES | DMA_ATTR_REQUIRE_COHERENT;

export interface UnmapRef {
  readonly type: DebugEntryType;
  readonly dmaAddr: number;
  readonly size: number;
  readonly dir: DmaDirection;
  readonly phys?: number;
  readonly sgCount?: number;
}

/**
 * The debug checker: dma-debug's bookkeeping and checks (kernel/dma/debug.c) for the classic API, with
 * the kernel's wording. One per kernel; entries are keyed by device and DMA address.
 */
export class DmaDebugChecker {
  readonly #trace: Trace;
  mode: DebugMode;
  readonly #reports: DmaDebugReport[] = [];
  /** device → dma address → entries at that address (identity mappings can collide). */
  readonly #entries = new Map<string, Map<number, DebugEntry[]>>();
  /** Cachelines of active mappings (for the overlapping-cacheline check). */
  readonly #cachelines = new ActiveCachelines();
  readonly #reportOverlap: boolean;
  #warnedOnce = new Set<string>();

  constructor(trace: Trace, mode: DebugMode, options: DebugCheckerOptions = {}) {
    trace.counters.declare(Counter);
    this.#trace = trace;
    this.mode = mode;
    this.#reportOverlap = options.reportCachelineOverlap ?? true;
  }

  /** Runs of cachelines held by tracked mappings (the size of the interval structure). */
  get cachelineRuns(): number {
    return this.#cachelines.runs;
  }

  get enabled(): boolean {
    return this.mode !== "off";
  }

  reports(): readonly DmaDebugReport[] {
    return this.#reports;
  }

  clearReports(): void {
    this.#reports.length = 0;
  }

  /** Reports a finding: records it, emits an event, and throws in "throw" mode. */
  report(check: DmaDebugCheck, device: string, message: string): void {
    if (this.mode === "off") return;
    const report: DmaDebugReport = { check, device, message, t: this.#trace.clock.now };
    this.#reports.push(report);
    this.#trace.counters.add(Counter.DmaDebugErrors);
    if (this.#trace.events.active) this.#trace.events.emit<DmaEvent>({ type: "dma-debug", t: report.t, device, check, message });
    if (this.mode === "throw") throw new DmaDebugError(report);
  }

  /** WARN_ON_ONCE: reported the first time per device and call site, like the kernel. */
  warnOnce(device: string, site: string, message: string): void {
    const key = `${device}\0${site}`;
    if (this.#warnedOnce.has(key)) return;
    this.#warnedOnce.add(key);
    this.report("api-warn", device, message);
  }

  // ---- live entries -------------------------------------------------------------------------

  /**
   * add_dma_entry: starts tracking a mapping that was made. `findings` are what checkMap held back for it
   * (reported now that the mapping exists). `lines` replaces the entry's own [phys, phys + size) as the
   * physical ranges whose cachelines it holds, as [phys, size] pairs: a scatterlist passes its CPU
   * entries on one of its DMA segments and none on the others.
   */
  add(
    entry: Omit<DebugEntry, "mapErrChecked" | "clLines" | "clClean">,
    attrs: number,
    mapErrChecked = false,
    findings?: readonly DebugFinding[],
    lines?: readonly number[],
  ): void {
    if (this.mode === "off") return;
    const e: DebugEntry = { ...entry, mapErrChecked, clLines: NO_LINES, clClean: (attrs & CACHE_CLEAN) !== 0 };
    let byAddr = this.#entries.get(e.device);
    if (byAddr === undefined) {
      byAddr = new Map();
      this.#entries.set(e.device, byAddr);
    }
    const list = byAddr.get(e.dmaAddr);
    if (list === undefined) byAddr.set(e.dmaAddr, [e]);
    else list.push(e);
    this.#insertCachelines(e, lines);
    if (findings !== undefined) for (const f of findings) this.report(f.check, e.device, f.message);
  }

  /** dma_mapping_error() was called on `dmaAddr`. */
  markChecked(device: string, dmaAddr: number): void {
    // Nothing to mark while no mapping is tracked (always so with dma-debug off): one test, no lookups.
    if (this.#entries.size === 0) return;
    const list = this.#entries.get(device)?.get(dmaAddr);
    if (list === undefined) return;
    for (const e of list) e.mapErrChecked = true;
  }

  /** Live entries of one device (or all), oldest first per address. */
  entries(device?: string): DebugEntry[] {
    const out: DebugEntry[] = [];
    for (const [dev, byAddr] of this.#entries) {
      if (device !== undefined && dev !== device) continue;
      for (const list of byAddr.values()) out.push(...list);
    }
    return out;
  }

  /**
   * check_unmap: finds the entry for `ref` and runs every unmap check on it, then forgets it.
   * Returns the entry that was removed, or undefined when none matched.
   */
  unmap(device: string, ref: UnmapRef): DebugEntry | undefined {
    if (this.mode === "off") return undefined;
    // Built only when a finding needs it: a correct unmap formats nothing.
    const where = (): string => `[device address=${hex64(ref.dmaAddr)}] [size=${ref.size} bytes]`;
    if (ref.dmaAddr < 0) {
      this.report("unmap-invalid-address", device, "device driver tries to free an invalid DMA memory address");
      return undefined;
    }
    const byAddr = this.#entries.get(device);
    const list = byAddr?.get(ref.dmaAddr);
    if (byAddr === undefined || list === undefined || list.length === 0) {
      this.report("unmap-not-mapped", device, `device driver tries to free DMA memory it has not allocated ${where()}`);
      return undefined;
    }
    // Prefer the entry that matches exactly, as bucket_find_exact does, then the first.
    const index = Math.max(
      0,
      list.findIndex((e) => e.size === ref.size && e.type === ref.type && e.dir === ref.dir),
    );
    const e = list[index];
    if (e === undefined) return undefined;
    const findings: [DmaDebugCheck, string][] = [];
    if (e.size !== ref.size) {
      findings.push(["unmap-size-mismatch", `device driver frees DMA memory with different size [device address=${hex64(ref.dmaAddr)}] [map size=${e.size} bytes] [unmap size=${ref.size} bytes]`]);
    }
    if (e.type !== ref.type) {
      findings.push(["unmap-wrong-function", `device driver frees DMA memory with wrong function ${where()} [mapped as ${e.type}] [unmapped as ${ref.type}]`]);
    } else if (e.type === "coherent" && ref.phys !== undefined && ref.phys !== e.phys) {
      findings.push(["unmap-cpu-address-mismatch", `device driver frees DMA memory with different CPU address ${where()} [cpu alloc address=${hex(e.phys)}] [cpu free address=${hex(ref.phys)}]`]);
    }
    if (e.type === "scatter-gather" && ref.sgCount !== undefined && ref.sgCount !== e.sgCount) {
      findings.push(["unmap-sg-count-mismatch", `device driver frees DMA sg list with different entry count [map count=${e.sgCount}] [unmap count=${ref.sgCount}]`]);
    }
    if (e.dir !== ref.dir) {
      findings.push(["unmap-direction-mismatch", `device driver frees DMA memory with different direction ${where()} [mapped with ${dmaDirectionName(e.dir)}] [unmapped with ${dmaDirectionName(ref.dir)}]`]);
    }
    if (!e.mapErrChecked && e.type !== "coherent" && e.type !== "scatter-gather") {
      findings.push(["mapping-error-not-checked", `device driver failed to check map error ${where()} [mapped as ${e.type}]`]);
    }
    // In "throw" mode the first finding throws before anything is forgotten, so the caller's state
    // and the checker's stay consistent; otherwise the entry goes and every finding is recorded.
    const first = findings[0];
    if (this.mode === "throw" && first !== undefined) this.report(first[0], device, first[1]);
    list.splice(index, 1);
    if (list.length === 0) byAddr.delete(ref.dmaAddr);
    this.#removeCachelines(e);
    for (const [check, message] of findings) this.report(check, device, message);
    return e;
  }

  /**
   * Checks made before a mapping is created (check_for_stack, check_for_illegal_area — skipped when
   * `pageFlags` is undefined, as for DMA_ATTR_MMIO — and the overlapping-cacheline check of
   * add_dma_entry), so that in "throw" mode a refused map leaves nothing mapped.
   *
   * With `defer`, findings are not recorded in "collect" mode but returned, for the caller to hand to add()
   * once the mapping exists or to drop when the map fails: upstream runs these checks in debug_dma_map_*
   * only after a successful map, so a refused map records nothing. ("throw" still throws at once.)
   */
  checkMap(
    device: string,
    phys: number,
    size: number,
    dir: DmaDirection,
    attrs: number,
    pageFlags: ((phys: number) => number) | undefined,
    defer = false,
  ): DebugFinding[] | undefined {
    if (this.mode === "off") return undefined;
    // Findings are rare: nothing is built for a clean map.
    const hold = defer && this.mode !== "throw";
    let held: DebugFinding[] | undefined;
    if (pageFlags !== undefined) {
      const flags = pageFlags(phys);
      // `pageFlags` answers -1 for a frame without a struct page: not memory the streaming API may map as
      // such (upstream would bounce or sync garbage; MMIO must say DMA_ATTR_MMIO or use dma_map_resource).
      if (flags < 0) {
        return this.#found(held, hold, device, "map-invalid-address", `device driver maps memory that is not RAM [addr=${hex(phys)}] [len=${size}]: MMIO needs dma_map_resource or DMA_ATTR_MMIO`);
      }
      if ((flags & FLAG_STACK) !== 0) held = this.#found(held, hold, device, "map-stack", `device driver maps memory from stack [addr=${hex(phys)}]`);
      if ((flags & FLAG_KERNEL_TEXT) !== 0) held = this.#found(held, hold, device, "map-kernel-text", `device driver maps memory from kernel text or rodata [addr=${hex(phys)}] [len=${size}]`);
    }
    if (this.#overlapReported(phys, size, dir, attrs)) {
      held = this.#found(held, hold, device, "cacheline-overlap", `cacheline tracking EEXIST, overlapping mappings aren't supported [phys=${hex(phys)}] [size=${size} bytes]`);
    }
    return held;
  }

  /** A finding of checkMap: held back (returned with the others) or reported now. */
  #found(held: DebugFinding[] | undefined, hold: boolean, device: string, check: DmaDebugCheck, message: string): DebugFinding[] | undefined {
    if (!hold) {
      this.report(check, device, message);
      return held;
    }
    const list = held ?? [];
    list.push({ check, message });
    return list;
  }

  /**
   * add_dma_entry's rule for reporting an overlap: the new mapping is tracked (not DMA_TO_DEVICE) and
   * meets a tracked one, it does not say DMA_ATTR_SKIP_CPU_SYNC, and not both are cache-clean
   * (DMA_ATTR_DEBUGGING_IGNORE_CACHELINES or DMA_ATTR_REQUIRE_COHERENT). Upstream compares the first
   * cacheline of each mapping; dmasim compares every line (a stronger check: a buffer whose last line is
   * a neighbour's first is a real corruption source on non-coherent devices). With several mappings in
   * the range, one that is not cache-clean is enough.
   */
  #overlapReported(phys: number, size: number, dir: DmaDirection, attrs: number): boolean {
    if (!this.#reportOverlap || dir === DmaDirection.TO_DEVICE || size === 0 || (attrs & DMA_ATTR_SKIP_CPU_SYNC) !== 0) return false;
    const met = this.#cachelines.overlap(Math.floor(phys / CACHELINE_SIZE), Math.floor((phys + size - 1) / CACHELINE_SIZE));
    if (met === Overlap.NONE) return false;
    return (attrs & CACHE_CLEAN) === 0 || met === Overlap.NOT_CLEAN;
  }

  /**
   * check_sync: a sync of [dmaAddr, dmaAddr+size) for the CPU (toCpu) or for the device. Returns the
   * mapping the sync falls in, when there is one, so the caller can keep the data movement inside it.
   */
  sync(device: string, dmaAddr: number, size: number, dir: DmaDirection, toCpu: boolean, sgCount?: number): DebugEntry | undefined {
    if (this.mode === "off") return undefined;
    const where = (): string => `[device address=${hex64(dmaAddr)}] [size=${size} bytes]`;
    const e = this.#findContaining(device, dmaAddr);
    if (e === undefined) {
      this.report("sync-not-mapped", device, `device driver tries to sync DMA memory it has not allocated ${where()}`);
      return undefined;
    }
    if (dmaAddr + size > e.dmaAddr + e.size) {
      this.report("sync-out-of-range", device, `device driver syncs DMA memory outside allocated range [device address=${hex64(dmaAddr)}] [allocation size=${e.size} bytes] [sync offset+size=${dmaAddr - e.dmaAddr + size}]`);
    }
    // As check_sync orders them: a bidirectional mapping may be synced any way; otherwise a sync for the
    // CPU with a direction other than DMA_TO_DEVICE of a mapping the device only reads, and a sync for the
    // device with a direction other than DMA_FROM_DEVICE of a mapping the device only writes, are reported
    // on top of the direction mismatch. Syncing a DMA_TO_DEVICE mapping for the CPU with DMA_TO_DEVICE is
    // allowed (it does nothing).
    const mapped = (): string => `[mapped with ${dmaDirectionName(e.dir)}] [synced with ${dmaDirectionName(dir)}]`;
    if (e.dir !== DmaDirection.BIDIRECTIONAL) {
      if (dir !== e.dir) this.report("sync-direction-mismatch", device, `device driver syncs DMA memory with different direction ${where()} ${mapped()}`);
      if (toCpu && e.dir !== DmaDirection.FROM_DEVICE && dir !== DmaDirection.TO_DEVICE) {
        this.report("sync-device-read-only-for-cpu", device, `device driver syncs device read-only DMA memory for cpu ${where()} ${mapped()}`);
      }
      if (!toCpu && e.dir !== DmaDirection.TO_DEVICE && dir !== DmaDirection.FROM_DEVICE) {
        this.report("sync-device-write-only-for-device", device, `device driver syncs device write-only DMA memory to device ${where()} ${mapped()}`);
      }
    }
    if (sgCount !== undefined && e.type === "scatter-gather" && sgCount !== e.sgCount) {
      this.report("sync-sg-count-mismatch", device, `device driver syncs DMA sg list with different entry count [map count=${e.sgCount}] [sync count=${sgCount}]`);
    }
    return e;
  }

  /** Outstanding mappings of a device that is being unbound (dma_debug_device_change). */
  leaks(device: string): DebugEntry[] {
    const found = this.entries(device);
    if (found.length > 0 && this.mode !== "off") {
      const first = found[0];
      const detail = first === undefined ? "" : ` One of leaked entries details: [device address=${hex64(first.dmaAddr)}] [size=${first.size} bytes] [mapped with ${dmaDirectionName(first.dir)}] [mapped as ${first.type}]`;
      this.report("leak", device, `device driver has pending DMA allocations while released from device [count=${found.length}]${detail}`);
    }
    return found;
  }

  /** Drops every entry of a device (after an unbind has reported them). */
  forget(device: string): void {
    for (const e of this.entries(device)) this.#removeCachelines(e);
    this.#entries.delete(device);
  }

  #findContaining(device: string, dmaAddr: number): DebugEntry | undefined {
    const byAddr = this.#entries.get(device);
    if (byAddr === undefined) return undefined;
    const exact = byAddr.get(dmaAddr)?.[0];
    if (exact !== undefined) return exact;
    // A partial sync may start inside a mapping (bucket_find_contain).
    for (const list of byAddr.values()) for (const e of list) if (dmaAddr >= e.dmaAddr && dmaAddr < e.dmaAddr + e.size) return e;
    return undefined;
  }

  /**
   * active_cacheline_insert: every mapping the device may write (not DMA_TO_DEVICE: the CPU cannot consume
   * stale data from a buffer the device only reads) is tracked, whatever its attributes — SKIP_CPU_SYNC
   * and cache-clean mappings too, so a later mapping that overlaps them is still judged. Coherent
   * allocations count as DMA_BIDIRECTIONAL, as in debug_dma_alloc_coherent.
   */
  #insertCachelines(e: DebugEntry, lines: readonly number[] | undefined): void {
    if (e.dir === DmaDirection.TO_DEVICE) return;
    const ranges = lines ?? [e.phys, e.size];
    const held: number[] = [];
    for (let i = 0; i + 1 < ranges.length; i += 2) {
      const phys = ranges[i] ?? 0;
      const size = ranges[i + 1] ?? 0;
      if (size <= 0) continue;
      const first = Math.floor(phys / CACHELINE_SIZE);
      const last = Math.floor((phys + size - 1) / CACHELINE_SIZE);
      this.#cachelines.insert(first, last, e.clClean);
      held.push(first, last);
    }
    e.clLines = held;
  }

  /** active_cacheline_remove. */
  #removeCachelines(e: DebugEntry): void {
    const held = e.clLines;
    for (let i = 0; i + 1 < held.length; i += 2) this.#cachelines.remove(held[i] ?? 0, held[i + 1] ?? 0, e.clClean);
    e.clLines = NO_LINES;
  }
}

// PageFlag.Stack and PageFlag.KernelText of @dmasim/memory, kept as numbers so the checker stays a leaf.
const FLAG_KERNEL_TEXT = 1 << 7;
const FLAG_STACK = 1 << 8;
