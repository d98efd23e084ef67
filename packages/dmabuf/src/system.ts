import type { DmaKernel } from "@dmasim/dma";
import { InvalidationLog } from "@dmasim/hmm-odp";
import type { Trace } from "@dmasim/trace";
import { DmaBufCounter } from "./counters.js";
import { DmaBufDebug } from "./debug.js";
import type { DmaBufDebugMode } from "./debug.js";
import { DmaBufInputError } from "./errors.js";
import type { DmaBuf } from "./dma-buf.js";

export interface DmaBufSystemOptions {
  /** The dma-buf rule checker: "throw" (default), "collect" or "off" (for speed runs). */
  readonly debug?: DmaBufDebugMode;
}

/**
 * The dma-buf subsystem of one DMA kernel: the rule checker, the invalidation log (the contract
 * `InvalidationLog` of @dmasim/hmm-odp, one record per invalidate_mappings), and the live buffers for
 * leak reports. Exporters and buffers belong to one system.
 */
export class DmaBufSystem {
  readonly kernel: DmaKernel;
  readonly trace: Trace;
  readonly debug: DmaBufDebug;
  readonly invalidations: InvalidationLog;
  /** @internal dma_buf_phys_vec_to_sgt's private struct dma_buf_dma of each table it made. */
  readonly sgtPrivate = new WeakMap<object, unknown>();
  /** dma-bufs exported and not yet released. */
  readonly buffers = new Set<DmaBuf>();
  #nextInode = 1;

  constructor(kernel: DmaKernel, options: DmaBufSystemOptions = {}) {
    if ((options as unknown) === null || typeof (options as unknown) !== "object") throw new DmaBufInputError("DmaBufSystem", "options", options, "an object { debug? }");
    const mode = options.debug ?? "throw";
    if (!["throw", "collect", "off"].includes(mode)) throw new DmaBufInputError("DmaBufSystem", "options.debug", mode, '"throw", "collect" or "off"');
    this.kernel = kernel;
    this.trace = kernel.trace;
    this.trace.counters.declare(DmaBufCounter);
    this.debug = new DmaBufDebug(this.trace, mode);
    this.invalidations = new InvalidationLog(this.trace.clock, "dma-buf");
  }

  /** @internal the inode number of the next exported buffer (names it in reports). */
  nextInode(): number {
    return this.#nextInode++;
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
