import type { TraceEvent as PlatformTraceEvent } from "@dmasim/pcie-p2p";
import type { DmaDebugCheck } from "./debug/errors.js";

// The events the DMA layer reports on its platform's trace (the kernel's dma tracepoints — trace_dma_map_phys
// and friends — swiotlb's trace_swiotlb_bounced, and dma-debug's reports). Addresses are plain numbers in an
// event: a record for exporters, which know no brand.

/**
 * A DMA API call as a slice: `B` when it starts, `E` when it returns, with its result (a mapped address,
 * an errno, a count, or 1/0 for a boolean) when it has one. Consumers of the API built on top of it
 * (dma_map_sg, the block iterator) report their calls the same way through `dmaApiSlice`.
 */
export interface DmaApiEvent {
  readonly type: "api";
  readonly t: number;
  readonly phase: "B" | "E";
  readonly name: string;
  readonly device: string;
  readonly result?: number;
}

/** swiotlb_bounce: `len` bytes copied between the original buffer at `orig` and the slot at `slot`. */
export interface SwiotlbBounceEvent {
  readonly type: "swiotlb.bounce";
  readonly t: number;
  readonly device: string;
  readonly orig: number;
  readonly slot: number;
  readonly len: number;
  readonly toDevice: boolean;
}

/** One flush of a CPU's IOVA flush queue (lazy mode), and what caused it. */
export interface FlushQueueFlushEvent {
  readonly type: "flush-queue.flush";
  readonly t: number;
  readonly cpu: number;
  readonly entries: number;
  readonly reason: "timeout" | "full" | "explicit";
}

/** A dma-debug finding, emitted whatever the checker's mode (throw or collect). */
export interface DmaDebugEvent {
  readonly type: "dma-debug";
  readonly t: number;
  readonly device: string;
  readonly check: DmaDebugCheck;
  readonly message: string;
}

/** This package's own events. */
export type DmaEvent = DmaApiEvent | SwiotlbBounceEvent | FlushQueueFlushEvent | DmaDebugEvent;

/** Every event a holder of a DMA kernel sees: the platform's (IOMMU, fabric) and this package's. */
export type TraceEvent = PlatformTraceEvent | DmaEvent;
