import { Counter } from "../counters.js";
import type { DmaEvent } from "../events.js";
import type { Trace } from "@dmasim/trace";
import type { PhysAddr } from "@dmasim/memory";
import type { DmaAddr } from "@dmasim/pcie-p2p";
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
import { DebugEntryTable, INFO_CHECKED, INFO_CLEAN, INFO_LINES, INFO_TRACKED, TYPE_COHERENT, TYPE_NAMES, TYPE_PHY, TYPE_SG, typeCode } from "./entry-table.js";
import type { DebugEntryType } from "./entry-table.js";
import { DmaDebugError } from "./errors.js";
import type { DmaDebugCheck, DmaDebugReport } from "./errors.js";

/** What dma-debug does with a finding: throw a `DmaDebugError`, collect it in the reports, or check nothing. */
export type DebugMode = "throw" | "collect" | "off";

export type { DebugEntryType } from "./entry-table.js";

/**
 * One live mapping as dma-debug tracks it (struct dma_debug_entry): a snapshot made when a caller asks
 * (entries(), leaks(), unmap(), sync()); the checker itself keeps its entries in a DebugEntryTable.
 */
export interface DebugEntry {
  /** How the mapping was made: single/phy, scatter-gather or coherent (dma-debug's entry type). */
  readonly type: DebugEntryType;
  /** BDF of the device the mapping is for. */
  readonly device: string;
  /** The DMA address the mapping returned. */
  readonly dmaAddr: DmaAddr;
  /** Bytes mapped. */
  readonly size: number;
  /** Physical address of the mapped memory. */
  readonly phys: PhysAddr;
  /** The direction it was mapped with. */
  readonly dir: DmaDirection;
  /** For sg entries: the nents passed to map, and what map returned. */
  readonly sgCount: number;
  /** For sg entries: the segment count the map returned (0 for other types). */
  readonly sgMappedEnts: number;
  /** dma_mapping_error() was called on this address since it was mapped. */
  readonly mapErrChecked: boolean;
  /**
   * The cacheline ranges this entry holds in the active-cacheline table, as [first, last] pairs (empty when
   * it is not tracked), and whether it was inserted as cache-clean.
   */
  readonly clLines: readonly number[];
  /** The entry was mapped cache-clean (DMA_ATTR_DEBUGGING_IGNORE_CACHELINES or DMA_ATTR_REQUIRE_COHERENT). */
  readonly clClean: boolean;
}

/** A finding of checkMap held back until the mapping is known to exist (see checkMap). */
export interface DebugFinding {
  /** The check that found the problem. */
  readonly check: DmaDebugCheck;
  /** The finding in dma-debug's wording. */
  readonly message: string;
}

/** The checker's view of the kernel configuration (fixed when the kernel is created). */
export interface DebugCheckerOptions {
  /**
   * Page flags by physical address for the map checks (check_for_stack, check_for_illegal_area): -1 for
   * a frame without a struct page. Given once by the kernel, so a map does not build one per call.
   */
  readonly pageFlags?: (phys: PhysAddr) => number;
  /**
   * Report overlapping cachelines at all. add_dma_entry stays quiet when dma_get_cache_alignment() is
   * below L1_CACHE_BYTES, and with CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC while swiotlb is active (small
   * kmalloc buffers that could share a line are bounced). Default true.
   */
  readonly reportCachelineOverlap?: boolean;
}

const NO_LINES: readonly number[] = [];
const CACHE_CLEAN = DMA_ATTR_DEBUGGING_IGNORE_CACHELINES | DMA_ATTR_REQUIRE_COHERENT;

/** What an unmap or free call tells dma-debug about the mapping it releases, for check_unmap to compare. */
export interface UnmapRef {
  /** The kind of mapping the unmap function releases (dma_unmap_sg: scatter-gather…). */
  readonly type: DebugEntryType;
  /** The DMA address passed to the unmap call. */
  readonly dmaAddr: DmaAddr;
  /** The size passed to the unmap call. */
  readonly size: number;
  /** The direction passed to the unmap call. */
  readonly dir: DmaDirection;
  /** The CPU address passed (dma_free_coherent), checked against the entry's. */
  readonly phys?: PhysAddr;
  /** The nents passed (dma_unmap_sg), checked against the one mapped. */
  readonly sgCount?: number;
}

/**
 * The debug checker: dma-debug's bookkeeping and checks (kernel/dma/debug.c) for the classic API, with
 * the kernel's wording. One per kernel; entries are keyed by device and DMA address.
 */
export class DmaDebugChecker {
  readonly #trace: Trace;
  /** Throw, collect or off; may be changed at any time (shutdown switches throw to collect while it runs). */
  mode: DebugMode;
  readonly #reports: DmaDebugReport[] = [];
  /** Live entries by device and DMA address (identity mappings can collide: several per address). */
  readonly #entries = new DebugEntryTable();
  /** The page-flags lookup the kernel gave (see DebugCheckerOptions.pageFlags). */
  readonly pageFlags: ((phys: PhysAddr) => number) | undefined;
  /** Cachelines of active mappings (for the overlapping-cacheline check). */
  readonly #cachelines = new ActiveCachelines();
  readonly #reportOverlap: boolean;
  #warnedOnce = new Set<string>();

  constructor(trace: Trace, mode: DebugMode, options: DebugCheckerOptions = {}) {
    trace.counters.declare(Counter);
    this.#trace = trace;
    this.mode = mode;
    this.#reportOverlap = options.reportCachelineOverlap ?? true;
    this.pageFlags = options.pageFlags;
  }

  /** Runs of cachelines held by tracked mappings (the size of the interval structure). */
  get cachelineRuns(): number {
    return this.#cachelines.runs;
  }

  /** False in mode `off`: no mapping is tracked and nothing is checked. */
  get enabled(): boolean {
    return this.mode !== "off";
  }

  /** Every finding so far, oldest first (thrown ones included). */
  reports(): readonly DmaDebugReport[] {
    return this.#reports;
  }

  /** Forgets the findings; tracked mappings stay. */
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
    const t = this.#entries;
    const s = this.#addEntry(entry.device, typeCode(entry.type), entry.dmaAddr, entry.size, entry.phys, entry.dir, attrs, mapErrChecked, lines);
    if (entry.type === "scatter-gather") t.setSg(s, entry.sgCount, entry.sgMappedEnts);
    if (findings !== undefined) for (const f of findings) this.report(f.check, entry.device, f.message);
  }

  /**
   * add() of a dma_map_phys mapping ("phy", not yet checked), with the fields as arguments: the map path
   * builds no object for dma-debug.
   */
  addPhys(device: string, dmaAddr: DmaAddr, size: number, phys: PhysAddr, dir: DmaDirection, attrs: number, findings: readonly DebugFinding[] | undefined): void {
    if (this.mode === "off") return;
    this.#addEntry(device, TYPE_PHY, dmaAddr, size, phys, dir, attrs, false, undefined);
    if (findings !== undefined) for (const f of findings) this.report(f.check, device, f.message);
  }

  #addEntry(device: string, type: number, dmaAddr: number, size: number, phys: number, dir: DmaDirection, attrs: number, checked: boolean, lines: readonly number[] | undefined): number {
    const t = this.#entries;
    const clean = (attrs & CACHE_CLEAN) !== 0;
    const s = t.add(t.deviceId(device), type, dmaAddr, size, phys, dir, (checked ? INFO_CHECKED : 0) | (clean ? INFO_CLEAN : 0));
    // active_cacheline_insert: every mapping the device may write (not DMA_TO_DEVICE: the CPU cannot
    // consume stale data from a buffer the device only reads) is tracked, whatever its attributes —
    // SKIP_CPU_SYNC and cache-clean mappings too, so a later mapping that overlaps them is still judged.
    // Coherent allocations count as DMA_BIDIRECTIONAL, as in debug_dma_alloc_coherent.
    if (dir === DmaDirection.TO_DEVICE) return s;
    if (lines === undefined) {
      if (size > 0) {
        this.#cachelines.insert(Math.floor(phys / CACHELINE_SIZE), Math.floor((phys + size - 1) / CACHELINE_SIZE), clean);
        t.setFlag(s, INFO_TRACKED);
      }
      return s;
    }
    const held: number[] = [];
    for (let i = 0; i + 1 < lines.length; i += 2) {
      const p = lines[i] ?? 0;
      const n = lines[i + 1] ?? 0;
      if (n <= 0) continue;
      const first = Math.floor(p / CACHELINE_SIZE);
      const last = Math.floor((p + n - 1) / CACHELINE_SIZE);
      this.#cachelines.insert(first, last, clean);
      held.push(first, last);
    }
    if (held.length > 0) {
      t.setLines(s, held);
      t.setFlag(s, INFO_LINES);
    }
    return s;
  }

  /** dma_mapping_error() was called on `dmaAddr`. */
  markChecked(device: string, dmaAddr: DmaAddr): void {
    // Nothing to mark while no mapping is tracked (always so with dma-debug off): one test, no lookups.
    const t = this.#entries;
    if (t.count === 0) return;
    const dev = t.findDevice(device);
    if (dev < 0) return;
    for (let s = t.first(dev, dmaAddr); s >= 0; s = t.nextSame(s)) t.setFlag(s, INFO_CHECKED);
  }

  /** A snapshot of the entry in slot s. */
  #entryAt(s: number): DebugEntry {
    const t = this.#entries;
    const info = t.info(s);
    const type: DebugEntryType = TYPE_NAMES[t.type(s)] ?? "single";
    const size = t.size(s);
    const phys = t.phys(s);
    const clLines =
      (info & INFO_LINES) !== 0
        ? (t.lines(s) ?? NO_LINES)
        : (info & INFO_TRACKED) !== 0
          ? [Math.floor(phys / CACHELINE_SIZE), Math.floor((phys + size - 1) / CACHELINE_SIZE)]
          : NO_LINES;
    return {
      type,
      device: t.deviceName(t.dev(s)),
      dmaAddr: t.addr(s) as DmaAddr,
      size,
      phys: phys as PhysAddr,
      dir: t.dir(s) as DmaDirection,
      sgCount: t.sgCount(s),
      sgMappedEnts: t.sgMappedEnts(s),
      mapErrChecked: (info & INFO_CHECKED) !== 0,
      clLines,
      clClean: (info & INFO_CLEAN) !== 0,
    };
  }

  /** Live entries of one device (or all), oldest first per address. */
  entries(device?: string): DebugEntry[] {
    const out: DebugEntry[] = [];
    const t = this.#entries;
    const dev = device === undefined ? -1 : t.findDevice(device);
    if (device !== undefined && dev < 0) return out;
    t.forEach(dev, (s) => out.push(this.#entryAt(s)));
    return out;
  }

  /**
   * check_unmap: finds the entry for `ref` and runs every unmap check on it, then forgets it.
   * Returns the entry that was removed, or undefined when none matched.
   */
  unmap(device: string, ref: UnmapRef): DebugEntry | undefined {
    if (this.mode === "off") return undefined;
    this.#removed = undefined;
    this.#unmap(device, typeCode(ref.type), ref.dmaAddr, ref.size, ref.dir, ref.phys, ref.sgCount, true);
    const e = this.#removed;
    this.#removed = undefined;
    return e;
  }

  /**
   * unmap() of a dma_unmap_phys / dma_unmap_page / dma_unmap_resource ("phy"), with the fields as
   * arguments and no snapshot: returns the size the removed entry was mapped with, or -1 when none
   * matched (or dma-debug is off).
   */
  unmapPhys(device: string, dmaAddr: DmaAddr, size: number, dir: DmaDirection): number {
    if (this.mode === "off") return -1;
    return this.#unmap(device, TYPE_PHY, dmaAddr, size, dir, undefined, undefined, false);
  }

  /** The snapshot unmap() returns, taken by #unmap before the entry's slot can be reused. */
  #removed: DebugEntry | undefined = undefined;

  #unmap(device: string, type: number, dmaAddr: number, size: number, dir: DmaDirection, phys: number | undefined, sgCount: number | undefined, snapshot: boolean): number {
    // Built only when a finding needs it: a correct unmap formats nothing.
    const where = (): string => `[device address=${hex64(dmaAddr)}] [size=${size} bytes]`;
    if (dmaAddr < 0) {
      this.report("unmap-invalid-address", device, "device driver tries to free an invalid DMA memory address");
      return -1;
    }
    const t = this.#entries;
    const dev = t.findDevice(device);
    const s = dev < 0 ? -1 : t.findExact(dev, dmaAddr, size, type, dir);
    if (s < 0) {
      this.report("unmap-not-mapped", device, `device driver tries to free DMA memory it has not allocated ${where()}`);
      return -1;
    }
    const eSize = t.size(s);
    const eType = t.type(s);
    const eDir = t.dir(s) as DmaDirection;
    const info = t.info(s);
    let findings: [DmaDebugCheck, string][] | undefined;
    const found = (check: DmaDebugCheck, message: string): void => {
      (findings ??= []).push([check, message]);
    };
    const typeName = (c: number): string => TYPE_NAMES[c] ?? "single";
    if (eSize !== size) {
      found("unmap-size-mismatch", `device driver frees DMA memory with different size [device address=${hex64(dmaAddr)}] [map size=${eSize} bytes] [unmap size=${size} bytes]`);
    }
    if (eType !== type) {
      found("unmap-wrong-function", `device driver frees DMA memory with wrong function ${where()} [mapped as ${typeName(eType)}] [unmapped as ${typeName(type)}]`);
    } else if (eType === TYPE_COHERENT && phys !== undefined && phys !== t.phys(s)) {
      found("unmap-cpu-address-mismatch", `device driver frees DMA memory with different CPU address ${where()} [cpu alloc address=${hex(t.phys(s))}] [cpu free address=${hex(phys)}]`);
    }
    if (eType === TYPE_SG && sgCount !== undefined && sgCount !== t.sgCount(s)) {
      found("unmap-sg-count-mismatch", `device driver frees DMA sg list with different entry count [map count=${t.sgCount(s)}] [unmap count=${sgCount}]`);
    }
    if (eDir !== dir) {
      found("unmap-direction-mismatch", `device driver frees DMA memory with different direction ${where()} [mapped with ${dmaDirectionName(eDir)}] [unmapped with ${dmaDirectionName(dir)}]`);
    }
    if ((info & INFO_CHECKED) === 0 && eType !== TYPE_COHERENT && eType !== TYPE_SG) {
      found("mapping-error-not-checked", `device driver failed to check map error ${where()} [mapped as ${typeName(eType)}]`);
    }
    // In "throw" mode the first finding throws before anything is forgotten, so the caller's state
    // and the checker's stay consistent; otherwise the entry goes and every finding is recorded.
    const first = findings?.[0];
    if (this.mode === "throw" && first !== undefined) this.report(first[0], device, first[1]);
    if (snapshot) this.#removed = this.#entryAt(s);
    this.#removeCachelines(s);
    t.remove(s);
    if (findings !== undefined) for (const [check, message] of findings) this.report(check, device, message);
    return eSize;
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
    phys: PhysAddr,
    size: number,
    dir: DmaDirection,
    attrs: number,
    pageFlags: ((phys: PhysAddr) => number) | undefined,
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
  sync(device: string, dmaAddr: DmaAddr, size: number, dir: DmaDirection, toCpu: boolean, sgCount?: number): DebugEntry | undefined {
    if (this.mode === "off") return undefined;
    const s = this.#sync(device, dmaAddr, size, dir, toCpu, sgCount);
    return s < 0 ? undefined : this.#entryAt(s);
  }

  /**
   * sync() without the snapshot: the end (DMA address + size) of the mapping the sync falls in, or -1
   * when there is none (or dma-debug is off).
   */
  syncEnd(device: string, dmaAddr: DmaAddr, size: number, dir: DmaDirection, toCpu: boolean): number {
    if (this.mode === "off") return -1;
    const s = this.#sync(device, dmaAddr, size, dir, toCpu, undefined);
    return s < 0 ? -1 : this.#entries.addr(s) + this.#entries.size(s);
  }

  #sync(device: string, dmaAddr: number, size: number, dir: DmaDirection, toCpu: boolean, sgCount: number | undefined): number {
    const where = (): string => `[device address=${hex64(dmaAddr)}] [size=${size} bytes]`;
    const t = this.#entries;
    const s = this.#findContaining(device, dmaAddr);
    if (s < 0) {
      this.report("sync-not-mapped", device, `device driver tries to sync DMA memory it has not allocated ${where()}`);
      return -1;
    }
    const eAddr = t.addr(s);
    const eSize = t.size(s);
    const eDir = t.dir(s) as DmaDirection;
    if (dmaAddr + size > eAddr + eSize) {
      this.report("sync-out-of-range", device, `device driver syncs DMA memory outside allocated range [device address=${hex64(dmaAddr)}] [allocation size=${eSize} bytes] [sync offset+size=${dmaAddr - eAddr + size}]`);
    }
    // As check_sync orders them: a bidirectional mapping may be synced any way; otherwise a sync for the
    // CPU with a direction other than DMA_TO_DEVICE of a mapping the device only reads, and a sync for the
    // device with a direction other than DMA_FROM_DEVICE of a mapping the device only writes, are reported
    // on top of the direction mismatch. Syncing a DMA_TO_DEVICE mapping for the CPU with DMA_TO_DEVICE is
    // allowed (it does nothing).
    const mapped = (): string => `[mapped with ${dmaDirectionName(eDir)}] [synced with ${dmaDirectionName(dir)}]`;
    if (eDir !== DmaDirection.BIDIRECTIONAL) {
      if (dir !== eDir) this.report("sync-direction-mismatch", device, `device driver syncs DMA memory with different direction ${where()} ${mapped()}`);
      if (toCpu && eDir !== DmaDirection.FROM_DEVICE && dir !== DmaDirection.TO_DEVICE) {
        this.report("sync-device-read-only-for-cpu", device, `device driver syncs device read-only DMA memory for cpu ${where()} ${mapped()}`);
      }
      if (!toCpu && eDir !== DmaDirection.TO_DEVICE && dir !== DmaDirection.FROM_DEVICE) {
        this.report("sync-device-write-only-for-device", device, `device driver syncs device write-only DMA memory to device ${where()} ${mapped()}`);
      }
    }
    if (sgCount !== undefined && t.type(s) === TYPE_SG && sgCount !== t.sgCount(s)) {
      this.report("sync-sg-count-mismatch", device, `device driver syncs DMA sg list with different entry count [map count=${t.sgCount(s)}] [sync count=${sgCount}]`);
    }
    return s;
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
    const t = this.#entries;
    const dev = t.findDevice(device);
    if (dev < 0) return;
    t.forEach(dev, (s) => {
      this.#removeCachelines(s);
      t.remove(s);
    });
  }

  /** The slot of the mapping of `device` that holds `dmaAddr` (bucket_find_contain), or -1. */
  #findContaining(device: string, dmaAddr: number): number {
    const t = this.#entries;
    const dev = t.findDevice(device);
    if (dev < 0) return -1;
    const exact = t.first(dev, dmaAddr);
    if (exact >= 0) return exact;
    // A partial sync may start inside a mapping.
    let found = -1;
    t.forEach(dev, (s) => {
      if (found < 0 && dmaAddr >= t.addr(s) && dmaAddr < t.addr(s) + t.size(s)) found = s;
    });
    return found;
  }

  /** active_cacheline_remove of what slot s inserted. */
  #removeCachelines(s: number): void {
    const t = this.#entries;
    const info = t.info(s);
    const clean = (info & INFO_CLEAN) !== 0;
    if ((info & INFO_TRACKED) !== 0) {
      const phys = t.phys(s);
      this.#cachelines.remove(Math.floor(phys / CACHELINE_SIZE), Math.floor((phys + t.size(s) - 1) / CACHELINE_SIZE), clean);
    } else if ((info & INFO_LINES) !== 0) {
      const held = t.lines(s) ?? NO_LINES;
      for (let i = 0; i + 1 < held.length; i += 2) this.#cachelines.remove(held[i] ?? 0, held[i + 1] ?? 0, clean);
    }
    t.clearFlag(s, INFO_TRACKED | INFO_LINES);
  }
}

// PageFlag.STACK and PageFlag.KERNEL_TEXT of @dmasim/memory, kept as numbers so the checker stays a leaf.
const FLAG_KERNEL_TEXT = 1 << 7;
const FLAG_STACK = 1 << 8;
