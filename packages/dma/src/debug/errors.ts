import { DmasimStateError } from "@dmasim/trace";

/**
 * The names of dma-debug's checks (kernel/dma/debug.c), plus the two-step checks dmasim adds because
 * upstream does not track dma_iova_* at all. Each report carries one of these, so tests and tools can
 * match on the check rather than on the wording.
 */
export type DmaDebugCheck =
  // unmap / free (check_unmap)
  | "unmap-invalid-address"
  | "unmap-not-mapped"
  | "unmap-size-mismatch"
  | "unmap-wrong-function"
  | "unmap-cpu-address-mismatch"
  | "unmap-sg-count-mismatch"
  | "unmap-direction-mismatch"
  | "mapping-error-not-checked"
  // sync (check_sync)
  | "sync-not-mapped"
  | "sync-out-of-range"
  | "sync-direction-mismatch"
  | "sync-device-read-only-for-cpu"
  | "sync-device-write-only-for-device"
  | "sync-sg-count-mismatch"
  // map (check_for_stack, check_for_illegal_area, check_sg_segment)
  | "map-stack"
  | "map-kernel-text"
  | "map-invalid-address"
  | "sg-segment-too-long"
  | "sg-segment-crosses-boundary"
  | "cacheline-overlap"
  // driver unbind
  | "leak"
  // WARN_ON / WARN_ON_ONCE in the API itself
  | "api-warn"
  // two-step API (dmasim only)
  | "iova-link-outside-allocation"
  | "iova-link-overlap"
  | "iova-link-unaligned-interior"
  | "iova-unlink-not-linked"
  | "iova-unlink-outside-allocation"
  | "iova-sync-outside-allocation"
  | "iova-destroy-length-mismatch"
  | "iova-free-with-links"
  | "iova-access-before-sync"
  | "iova-use-after-destroy"
  | "iova-state-not-allocated"
  | "iova-state-foreign-device"
  | "iova-leak"
  // HMM users (dmasim only: upstream has lockdep and WARNs for a few of these, no checker)
  | "hmm-range-fault-unlocked"
  | "hmm-pte-without-retry"
  | "hmm-dma-map-unlocked"
  | "hmm-dma-map-invalid-entry"
  | "hmm-stale-seq"
  | "hmm-invalidate-incomplete";

/** One finding of the debug checker. */
export interface DmaDebugReport {
  /** The check that fired, for matching in tests and tools. */
  readonly check: DmaDebugCheck;
  /** BDF of the device whose call misused the API. */
  readonly device: string;
  /** The finding in dma-debug's wording (`device driver frees DMA memory with wrong function […]`). */
  readonly message: string;
  /** Virtual time of the finding, in nanoseconds. */
  readonly t: number;
}

/**
 * Thrown (in the default "throw" mode) when a driver misuses the DMA API. The kernel would print a
 * WARN with this wording and carry on; dmasim stops the flow at the faulty call so the stack trace points
 * at it. Use `debug: "collect"` to carry on like the kernel and inspect `kernel.debugReports()` afterwards.
 */
export class DmaDebugError extends DmasimStateError {
  override readonly name: string = "DmaDebugError";
  /** A dmasim code: the kernel has no errno here, dma-debug only prints a WARN. */
  declare readonly code: "EDMADEBUG";
  /** @param report The finding the error stands for (also in the kernel's `debugReports()`). */
  constructor(readonly report: DmaDebugReport) {
    super("EDMADEBUG", `DMA-API: ${report.device}: ${report.message} [check ${report.check}]`);
  }
}
