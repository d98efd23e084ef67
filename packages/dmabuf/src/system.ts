import { priceCounters } from "@dmasim/dma";
import type { DmaKernel } from "@dmasim/dma";
import { InvalidationLog } from "@dmasim/hmm-odp";
import type { CounterSnapshot, Trace } from "@dmasim/trace";
import { DmaBufCounter } from "./counters.js";
import { DmaBufDebug } from "./debug.js";
import type { DmaBufDebugMode } from "./debug.js";
import { DmaBufInputError } from "./errors.js";
import type { DmaBuf } from "./dma-buf.js";
import { kNextInode, kSgtPrivate } from "./internal.js";

/** One line of DmaBufSystem.costs(). */
export interface DmaBufCostLine {
  /** What the line prices (copies, fence waits, mapping work). */
  readonly what: string;
  /** Modelled time of the line in ns. */
  readonly ns: number;
  /** Where the figure comes from (a measurement or a document). */
  readonly source: string;
  /** True when the figure is assumed rather than measured. */
  readonly assumed: boolean;
}

/** DmaBufSystem.costs(): the dma-buf block's counters and the modelled time beside them. */
export interface DmaBufCostReport {
  /** The dma-buf counters that moved, by name. */
  readonly counters: Readonly<Record<string, number>>;
  /** The priced lines, one per kind of work. */
  readonly lines: readonly DmaBufCostLine[];
  /** The DMA layer's own report of the same interval. */
  readonly dma: ReturnType<typeof priceCounters>;
  /**
   * Copies plus DMA mapping work. Fence waits are not added: they are the importers' view of the same
   * copy time.
   */
  readonly totalNs: number;
}

/** The kernel whose dma-buf semantics a system follows. */
export type DmaBufVersion = "7.1" | "6.19";

/** How `new DmaBufSystem(kernel, options)` sets up the subsystem: rule checker mode and kernel semantics. */
export interface DmaBufSystemOptions {
  /** The dma-buf rule checker: "throw" (default), "collect" or "off" (for speed runs). */
  readonly debug?: DmaBufDebugMode;
  /**
   * The dma-buf semantics: "7.1" (default) or "6.19": `CONFIG_DMABUF_MOVE_NOTIFY` off (dynamic
   * importers pinned at map time too), an importer with ops but no `move_notify` refused (-EINVAL),
   * and VFIO refusing every pinned importer and not waiting for unmaps on revoke.
   */
  readonly version?: DmaBufVersion;
}

/**
 * The dma-buf subsystem of one DMA kernel: the rule checker, the invalidation log (the contract
 * `InvalidationLog` of @dmasim/hmm-odp, one record per invalidate_mappings), and the live buffers for
 * leak reports. Exporters and buffers belong to one system.
 */
export class DmaBufSystem {
  /** The DMA kernel importers map through. */
  readonly kernel: DmaKernel;
  /** The kernel's trace: the dma-buf counters and events go here. */
  readonly trace: Trace;
  /** The dma-buf rule checker. */
  readonly debug: DmaBufDebug;
  /** The kernel whose dma-buf semantics this system follows. */
  readonly version: DmaBufVersion;
  /** One record per invalidate_mappings, with its quiescence and first-DMA latencies. */
  readonly invalidations: InvalidationLog;
  /** dma_buf_phys_vec_to_sgt's private struct dma_buf_dma of each table it made. */
  readonly [kSgtPrivate] = new WeakMap<object, unknown>();
  /** dma-bufs exported and not yet released. */
  readonly buffers = new Set<DmaBuf>();
  #nextInode = 1;

  constructor(kernel: DmaKernel, options: DmaBufSystemOptions = {}) {
    if ((options as unknown) === null || typeof (options as unknown) !== "object") throw new DmaBufInputError("DmaBufSystem", "options", options, "an object { debug? }");
    const mode = options.debug ?? "throw";
    if (!["throw", "collect", "off"].includes(mode)) throw new DmaBufInputError("DmaBufSystem", "options.debug", mode, '"throw", "collect" or "off"');
    const version = options.version ?? "7.1";
    if (!["7.1", "6.19"].includes(version)) throw new DmaBufInputError("DmaBufSystem", "options.version", version, '"7.1" or "6.19"');
    this.version = version;
    this.kernel = kernel;
    this.trace = kernel.trace;
    this.trace.counters.declare(DmaBufCounter);
    this.debug = new DmaBufDebug(this.trace, mode);
    this.invalidations = new InvalidationLog(this.trace.clock, "dma-buf");
  }

  /** The inode number of the next exported buffer (names it in reports). */
  [kNextInode](): number {
    return this.#nextInode++;
  }

  /**
   * Modelled time of the dma-buf work since `since` (or since the start), counters beside it: the
   * importers' fence waits, the exporters' copies (at their assumed copy rate: no published figure for
   * a dma-buf move exists) and the DMA mapping work of maps and rebinds (priced by the DMA kernel's
   * cost profile, whose rows cite their sources).
   */
  costs(since?: CounterSnapshot): DmaBufCostReport {
    const now = this.trace.counters.snapshot();
    const d = since === undefined ? now : now.diff(since);
    const dma = priceCounters(d, this.kernel.profile);
    const lines: DmaBufCostLine[] = [
      { what: "fence waits", ns: d.get(DmaBufCounter.DmaBufFenceWaitNs), source: "virtual time until the fences signalled (copy-engine time, assumed rate)", assumed: true },
      { what: "exporter copies", ns: d.get(DmaBufCounter.DmaBufCopyNs), source: "assumed: the exporter's copyBytesPerNs (no published dma-buf move figure)", assumed: true },
      { what: "DMA mapping (maps, unmaps, rebinds)", ns: dma.totalNs, source: "@dmasim/dma cost profile", assumed: false },
    ];
    const counters: Record<string, number> = {};
    for (const [name, index] of Object.entries(DmaBufCounter)) {
      const v = d.get(index);
      if (v !== 0) counters[name] = v;
    }
    return { counters, lines, dma, totalNs: d.get(DmaBufCounter.DmaBufCopyNs) + dma.totalNs };
  }

  /**
   * What is still held: buffers not released, with their attachments and mappings. Each is also the
   * "leak" finding (recorded, never thrown: this is a report).
   */
  leaks(): { buffers: number; attachments: number; mappings: number } {
    let attachments = 0;
    let mappings = 0;
    for (const b of this.buffers) {
      attachments += b.attachments.length;
      for (const a of b.attachments) mappings += a.liveMappings;
    }
    return { buffers: this.buffers.size, attachments, mappings };
  }
}
