import type { Iova } from "@dmasim/iommu";
import type { TraceEvent as PlatformTraceEvent } from "@dmasim/pcie-p2p";
import type { DmaDebugCheck } from "./debug/errors.js";

// The events the DMA layer reports on its platform's trace (the kernel's dma tracepoints — trace_dma_map_phys
// and friends — swiotlb's trace_swiotlb_bounced, and dma-debug's reports). Address fields carry their brand
// (`Iova`): a type only, so the serialised event (the JSON event log) is a plain number.

/**
 * A DMA API call as a slice: `B` when it starts, `E` when it returns, with its result (a mapped address,
 * an errno, a count, or 1/0 for a boolean) when it has one. Consumers of the API built on top of it
 * (dma_map_sg, the block iterator) report their calls the same way through `dmaApiSlice`.
 */
export interface DmaApiEvent {
  /** Names the event: the discriminant of `DmaEvent`. */
  readonly type: "api";
  /** Virtual time in ns. */
  readonly t: number;
  /** `B` when the call starts, `E` when it returns (Chrome trace phases). */
  readonly phase: "B" | "E";
  /** Kernel name of the call (`dma_map_phys`, `dma_iova_link`…). */
  readonly name: string;
  /** BDF of the device the call is for. */
  readonly device: string;
  /** On `E`: the mapped address, errno, count, or 1/0 for a boolean; absent for a call that returns nothing. */
  readonly result?: number;
}

/** swiotlb_bounce: `len` bytes copied between the original buffer at `orig` and the slot at `slot`. */
export interface SwiotlbBounceEvent {
  /** Names the event: the discriminant of `DmaEvent`. */
  readonly type: "swiotlb.bounce";
  /** Virtual time in ns. */
  readonly t: number;
  /** BDF of the device the bounce is for. */
  readonly device: string;
  /** Physical address of the original buffer. */
  readonly orig: number;
  /** Physical address of the bounce slot. */
  readonly slot: number;
  /** Bytes copied. */
  readonly len: number;
  /** True for a copy into the slot (before the device reads), false for a copy back to the original. */
  readonly toDevice: boolean;
}

/** One flush of a CPU's IOVA flush queue (lazy mode), and what caused it. */
export interface FlushQueueFlushEvent {
  /** Names the event: the discriminant of `DmaEvent`. */
  readonly type: "flush-queue.flush";
  /** Virtual time in ns. */
  readonly t: number;
  /** CPU whose queue triggered the flush. */
  readonly cpu: number;
  /** Deferred unmaps the flush released. */
  readonly entries: number;
  /**
   * The queue's timer expired (fq_flush_timeout), a ring was full, or the queues were drained explicitly (teardown).
   */
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
  /** Names the event: the discriminant of `DmaEvent`. */
  readonly type: "iova.alloc";
  /** Virtual time in ns. */
  readonly t: number;
  /** BDF of the device the IOVA was allocated for. */
  readonly device: string;
  /** First IOVA of the allocated range. */
  readonly iova: Iova;
  /** Bytes of IOVA space allocated. */
  readonly size: number;
  /** The mapping path that asked for it: classic or two-step. */
  readonly path: IovaPath;
}

/**
 * iommu_dma_free_iova: `size` bytes at `iova` given back. `queued` when the unmap deferred its IOTLB
 * invalidation (lazy mode): the range then waits in the flush queue and is not reusable until a
 * `flush-queue.release` for it.
 */
export interface IovaFreeEvent {
  /** Names the event: the discriminant of `DmaEvent`. */
  readonly type: "iova.free";
  /** Virtual time in ns. */
  readonly t: number;
  /** BDF of the device the IOVA was allocated for. */
  readonly device: string;
  /** First IOVA of the freed range. */
  readonly iova: Iova;
  /** Bytes of IOVA space given back. */
  readonly size: number;
  /** The mapping path that gave it back: classic or two-step. */
  readonly path: IovaPath;
  /** True when the range went into the flush queue (lazy invalidation) instead of straight back to the allocator. */
  readonly queued: boolean;
}

/** A flush-queue flush released one queued IOVA range (fq_ring_free): reusable from now on. */
export interface FlushQueueReleaseEvent {
  /** Names the event: the discriminant of `DmaEvent`. */
  readonly type: "flush-queue.release";
  /** Virtual time in ns. */
  readonly t: number;
  /** BDF of the device whose DMA domain the flush queue belongs to. */
  readonly device: string;
  /** CPU whose flush-queue ring held the range. */
  readonly cpu: number;
  /** First IOVA of the released range. */
  readonly iova: Iova;
  /** Bytes of IOVA space released (whole granules). */
  readonly size: number;
}

/** A dma-debug finding, emitted whatever the checker's mode (throw or collect). */
export interface DmaDebugEvent {
  /** Names the event: the discriminant of `DmaEvent`. */
  readonly type: "dma-debug";
  /** Virtual time in ns. */
  readonly t: number;
  /** BDF of the device whose call misused the API. */
  readonly device: string;
  /** The check that fired. */
  readonly check: DmaDebugCheck;
  /** The finding in dma-debug's wording. */
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
