import { Counter } from "@dmasim/trace";
import type { Trace } from "@dmasim/trace";
import { CACHELINE_SIZE, DMA_ATTR_DEBUGGING_IGNORE_CACHELINES, DMA_ATTR_SKIP_CPU_SYNC, DmaDirection, dmaDirectionName } from "../constants.js";
import { hex, hex64 } from "@dmasim/trace";
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
  /** First and last cacheline this entry holds in the active-cacheline table, or -1. */
  clFirst: number;
  clLast: number;
}

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
  /** cacheline number → active mappings holding it (for the overlapping-cacheline check). */
  readonly #cachelines = new Map<number, number>();
  #warnedOnce = new Set<string>();

  constructor(trace: Trace, mode: DebugMode) {
    this.#trace = trace;
    this.mode = mode;
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
    if (this.#trace.events.active) this.#trace.events.emit({ type: "dma-debug", t: report.t, device, check, message });
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

  add(entry: Omit<DebugEntry, "mapErrChecked" | "clFirst" | "clLast">, attrs: number, mapErrChecked = false): void {
    if (this.mode === "off") return;
    const e: DebugEntry = { ...entry, mapErrChecked, clFirst: -1, clLast: -1 };
    let byAddr = this.#entries.get(e.device);
    if (byAddr === undefined) {
      byAddr = new Map();
      this.#entries.set(e.device, byAddr);
    }
    const list = byAddr.get(e.dmaAddr);
    if (list === undefined) byAddr.set(e.dmaAddr, [e]);
    else list.push(e);
    this.#insertCachelines(e, attrs);
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
   * Checks made before a mapping is created (check_for_stack, check_for_illegal_area and the
   * overlapping-cacheline check), so that in "throw" mode a refused map leaves nothing mapped.
   */
  checkMap(device: string, phys: number, size: number, dir: DmaDirection, attrs: number, pageFlags: (phys: number) => number): void {
    if (this.mode === "off") return;
    const flags = pageFlags(phys);
    // `pageFlags` answers -1 for a frame without a struct page: not memory the streaming API may map as
    // such (upstream would bounce or sync garbage; MMIO must say DMA_ATTR_MMIO or use dma_map_resource).
    if (flags < 0) {
      this.report("map-invalid-address", device, `device driver maps memory that is not RAM [addr=${hex(phys)}] [len=${size}]: MMIO needs dma_map_resource or DMA_ATTR_MMIO`);
      return;
    }
    if ((flags & FLAG_STACK) !== 0) this.report("map-stack", device, `device driver maps memory from stack [addr=${hex(phys)}]`);
    if ((flags & FLAG_KERNEL_TEXT) !== 0) this.report("map-kernel-text", device, `device driver maps memory from kernel text or rodata [addr=${hex(phys)}] [len=${size}]`);
    const [first, last] = this.#linesFor(phys, size, dir, attrs);
    for (let cl = first; cl <= last; cl++) {
      if ((this.#cachelines.get(cl) ?? 0) > 0) {
        this.report("cacheline-overlap", device, `cacheline tracking EEXIST, overlapping mappings aren't supported [phys=${hex(phys)}] [size=${size} bytes]`);
        return;
      }
    }
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
   * Active-cacheline tracking. Upstream tracks only the first cacheline of each mapping; dmasim tracks
   * every cacheline a mapping covers, so a buffer that shares its last line with a neighbour's first is
   * caught too (a real corruption source on non-coherent devices). Upstream skips DMA_TO_DEVICE mappings
   * (the device only reads, the CPU cannot be hurt) and dmasim also skips SKIP_CPU_SYNC and
   * DEBUGGING_IGNORE_CACHELINES mappings, whose owners take charge of cache maintenance.
   */
  #linesFor(phys: number, size: number, dir: DmaDirection, attrs: number): [number, number] {
    if (dir === DmaDirection.TO_DEVICE || size === 0) return [0, -1];
    if ((attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_DEBUGGING_IGNORE_CACHELINES)) !== 0) return [0, -1];
    return [Math.floor(phys / CACHELINE_SIZE), Math.floor((phys + size - 1) / CACHELINE_SIZE)];
  }

  #insertCachelines(e: DebugEntry, attrs: number): void {
    if (e.type === "coherent") return;
    const [first, last] = this.#linesFor(e.phys, e.size, e.dir, attrs);
    if (last < first) return;
    for (let cl = first; cl <= last; cl++) this.#cachelines.set(cl, (this.#cachelines.get(cl) ?? 0) + 1);
    e.clFirst = first;
    e.clLast = last;
  }

  #removeCachelines(e: DebugEntry): void {
    if (e.clFirst < 0) return;
    for (let cl = e.clFirst; cl <= e.clLast; cl++) {
      const n = (this.#cachelines.get(cl) ?? 1) - 1;
      if (n <= 0) this.#cachelines.delete(cl);
      else this.#cachelines.set(cl, n);
    }
    e.clFirst = -1;
  }
}

// PageFlag.Stack and PageFlag.KernelText of @dmasim/memory, kept as numbers so the checker stays a leaf.
const FLAG_KERNEL_TEXT = 1 << 7;
const FLAG_STACK = 1 << 8;
