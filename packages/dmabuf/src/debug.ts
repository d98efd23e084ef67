import { DmasimStateError } from "@dmasim/trace";
import type { Trace } from "@dmasim/trace";
import { DmaBufCounter } from "./counters.js";

/**
 * The dma-buf rules dmasim checks (B.7 of the reference; upstream checks only the first with
 * dma_resv_assert_held, and none of the others at all):
 * - "resv-not-held": map, unmap, pin, unpin, invalidate_mappings, phys_vec_to_sgt or free_sgt without
 *   the reservation lock;
 * - "resv-relock-in-invalidate": an importer taking the lock again inside its invalidate_mappings
 *   callback (the callback runs with it held: a deadlock in the kernel);
 * - "dma-before-kernel-fence": device DMA through a mapping while a KERNEL fence (an exporter's move
 *   copy) has not signalled;
 * - "dma-after-unmap": device DMA through a mapping that was unmapped (after an invalidation or not);
 * - "write-after-invalidate": a device write through a mapping that was invalidated but not yet unmapped
 *   (only speculative reads are allowed in that window);
 * - "revoke-never-unmapped": an importer still holds a mapping after a revoke's invalidation, so the
 *   exporter's wait for the unmap completion does not end;
 * - "detach-mapped": dma_buf_detach of an attachment that still has mappings;
 * - "api-warn": a WARN_ON of the dma-buf core (pin of a static importer, bad export ops, ...);
 * - "leak": a dma-buf released, or a system torn down, with attachments or mappings left.
 */
export type DmaBufCheck =
  | "resv-not-held"
  | "resv-relock-in-invalidate"
  | "dma-before-kernel-fence"
  | "dma-after-unmap"
  | "write-after-invalidate"
  | "revoke-never-unmapped"
  | "detach-mapped"
  | "api-warn"
  | "leak";

/** What the rule checker does with a finding: throw it, collect it for `reports()`, or not check at all. */
export type DmaBufDebugMode = "throw" | "collect" | "off";

/** One finding of the dma-buf rule checker. */
export interface DmaBufDebugReport {
  /** Which rule was broken. */
  readonly check: DmaBufCheck;
  /** BDF of the importing device, or "" for a buffer-wide finding. */
  readonly device: string;
  /** What happened, in words. */
  readonly message: string;
  /** Virtual time of the finding. */
  readonly time: number;
}

/** A dma-buf rule was broken ("throw" mode). Code EDMADEBUG, like dma-debug's findings. */
export class DmaBufDebugError extends DmasimStateError {
  override readonly name: string = "DmaBufDebugError";
  /** Which rule was broken. */
  readonly check: DmaBufCheck;
  /** The finding in full. */
  readonly report: DmaBufDebugReport;
  constructor(report: DmaBufDebugReport) {
    super("EDMADEBUG", `dma-buf ${report.check}${report.device === "" ? "" : ` (${report.device})`}: ${report.message}`);
    this.check = report.check;
    this.report = report;
  }
}

/**
 * The dma-buf rule checker, to dma-debug's standard: "throw" throws a DmaBufDebugError before the call
 * changes anything, "collect" records the finding and lets the call go on as the kernel would, "off"
 * checks nothing.
 */
export class DmaBufDebug {
  /** The checker's mode, fixed at creation. */
  readonly mode: DmaBufDebugMode;
  readonly #trace: Trace;
  readonly #reports: DmaBufDebugReport[] = [];

  constructor(trace: Trace, mode: DmaBufDebugMode) {
    this.#trace = trace;
    this.mode = mode;
  }

  /** False in "off" mode: callers may skip the work of checking. */
  get enabled(): boolean {
    return this.mode !== "off";
  }

  /** Records a finding; throws it as a DmaBufDebugError in "throw" mode. */
  report(check: DmaBufCheck, device: string, message: string): void {
    if (this.mode === "off") return;
    const report: DmaBufDebugReport = { check, device, message, time: this.#trace.clock.now };
    this.#reports.push(report);
    this.#trace.counters.add(DmaBufCounter.DmaBufDebugErrors);
    if (this.mode === "throw") throw new DmaBufDebugError(report);
  }

  /** Every finding so far (in "throw" mode, the ones that threw). */
  reports(): readonly DmaBufDebugReport[] {
    return this.#reports.slice();
  }

  /** The findings of one check. */
  count(check: DmaBufCheck): number {
    let n = 0;
    for (const r of this.#reports) if (r.check === check) n++;
    return n;
  }
}
