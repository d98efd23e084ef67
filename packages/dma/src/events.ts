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
  /** The device whose DMA domain the queue belongs to (absent for a queue built without one). */
  readonly device?: string;
  /** Entries still waiting on every ring of the queue after the flush. */
  readonly pending?: number;
}

/** Which mapping path asked for or gave back an IOVA: one call per mapping, or the two-step API. */
export type IovaPath = "classic" | "two-step";

/** iommu_dma_alloc_iova handed `size` bytes (granule-aligned) of IOVA space at `iova` to `device`. */
export interface IovaAllocEvent {
  readonly type: "iova.alloc";
  readonly t: number;
  readonly device: string;
  readonly iova: number;
  readonly size: number;
  readonly path: IovaPath;
}

/**
 * iommu_dma_free_iova: `size` bytes at `iova` given back. `queued` when the unmap deferred its IOTLB
 * invalidation (lazy mode): the range then waits in the flush queue and is not reusable until a
 * `flush-queue.release` for it.
 */
export interface IovaFreeEvent {
  readonly type: "iova.free";
  readonly t: number;
  readonly device: string;
  readonly iova: number;
  readonly size: number;
  readonly path: IovaPath;
  readonly queued: boolean;
}

/** A flush-queue flush released one queued IOVA range (fq_ring_free): reusable from now on. */
export interface FlushQueueReleaseEvent {
  readonly type: "flush-queue.release";
  readonly t: number;
  readonly device: string;
  readonly cpu: number;
  readonly iova: number;
  readonly size: number;
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
export type DmaEvent =
  | DmaApiEvent
  | SwiotlbBounceEvent
  | FlushQueueFlushEvent
  | FlushQueueReleaseEvent
  | IovaAllocEvent
  | IovaFreeEvent
  | DmaDebugEvent;

/** Every event a holder of a DMA kernel sees: the platform's (IOMMU, fabric) and this package's. */
export type TraceEvent = PlatformTraceEvent | DmaEvent;
