import type { Trace } from "@dmasim/trace";
import type { TraceEvent as HmmTraceEvent } from "@dmasim/hmm-odp";

// The events the dma-buf core and its exporters report on the kernel's trace: mappings of attachments,
// invalidations, moves between VRAM and RAM, and revokes. A buffer is named by its exporter name and
// inode number, as /sys/kernel/debug/dma_buf/bufinfo lists it.

/** How an attachment's mapping is handed out: an sg_table, or dmasim's physical-range list. */
export type DmaBufMappingKind = "sgt" | "phys";

/** dma_buf_map_attachment (or the physical-range list's map) handed `device` a mapping of the buffer. */
export interface DmaBufMapEvent {
  /** The event's name. */
  readonly type: "dmabuf.map";
  /** Virtual time, ns. */
  readonly t: number;
  /** The buffer's inode number. */
  readonly buf: number;
  /** The exporter's name (exp_name). */
  readonly exporter: string;
  /** The importing device (BDF). */
  readonly device: string;
  /** sg_table or physical-range list. */
  readonly kind: DmaBufMappingKind;
  /** Bytes of the buffer. */
  readonly size: number;
}

/** dma_buf_unmap_attachment: `device` gave a mapping back. */
export interface DmaBufUnmapEvent {
  /** The event's name. */
  readonly type: "dmabuf.unmap";
  /** Virtual time, ns. */
  readonly t: number;
  /** The buffer's inode number. */
  readonly buf: number;
  /** The exporter's name (exp_name). */
  readonly exporter: string;
  /** The importing device (BDF). */
  readonly device: string;
  /** sg_table or physical-range list. */
  readonly kind: DmaBufMappingKind;
}

/**
 * dma_buf_invalidate_mappings (dma_buf_move_notify up to 7.0): every importer with a callback was told
 * to drop its mappings; `importers` callbacks ran, `pending` mappings are invalidated and not yet unmapped.
 */
export interface DmaBufInvalidateEvent {
  /** The event's name. */
  readonly type: "dmabuf.invalidate";
  /** Virtual time, ns. */
  readonly t: number;
  /** The buffer's inode number. */
  readonly buf: number;
  /** The exporter's name (exp_name). */
  readonly exporter: string;
  /** Why: "invalidate", "move", "migrate", "evict", a vfio-pci reason such as "memory-disable". */
  readonly reason: string;
  /** Importers whose invalidate callback ran. */
  readonly importers: number;
  /** Mappings invalidated and not yet unmapped after the callbacks. */
  readonly pending: number;
}

/** Where a GPU buffer's blocks live. */
export type DmaBufPlacement = "vram" | "ram";

/** The GPU exporter moved `blocks` blocks (`bytes` bytes) of a buffer to `to`; `inVram` blocks are in VRAM after. */
export interface DmaBufMoveEvent {
  /** The event's name. */
  readonly type: "dmabuf.move";
  /** Virtual time, ns. */
  readonly t: number;
  /** The buffer's inode number. */
  readonly buf: number;
  /** The exporter's name (exp_name). */
  readonly exporter: string;
  /** Where the blocks went. */
  readonly to: DmaBufPlacement;
  /** Blocks moved. */
  readonly blocks: number;
  /** Bytes copied. */
  readonly bytes: number;
  /** Blocks of the buffer in VRAM after the move. */
  readonly inVram: number;
  /** Blocks of the buffer. */
  readonly totalBlocks: number;
}

/**
 * The GPU exporter created a buffer: `inVram` of its `totalBlocks` blocks in VRAM, the rest in system RAM
 * (VRAM was asked for and full, or RAM was). Later placements come with each `dmabuf.move`.
 */
export interface DmaBufPlaceEvent {
  /** The event's name. */
  readonly type: "dmabuf.place";
  /** Virtual time, ns. */
  readonly t: number;
  /** The buffer's inode number. */
  readonly buf: number;
  /** The exporter's name (exp_name). */
  readonly exporter: string;
  /** Bytes of the buffer. */
  readonly size: number;
  /** Blocks of the buffer in VRAM. */
  readonly inVram: number;
  /** Blocks of the buffer. */
  readonly totalBlocks: number;
}

/**
 * vfio-pci revoked a buffer (`revoked` true: memory disabled, reset, close) or made it usable again;
 * `waitingFor` mappings the importers have not unmapped yet.
 */
export interface DmaBufRevokeEvent {
  /** The event's name. */
  readonly type: "dmabuf.revoke";
  /** Virtual time, ns. */
  readonly t: number;
  /** The buffer's inode number. */
  readonly buf: number;
  /** The exporter's name (exp_name). */
  readonly exporter: string;
  /** True for a revoke, false when the buffer becomes usable again. */
  readonly revoked: boolean;
  /** Why: "invalidate", "move", "migrate", "evict", a vfio-pci reason such as "memory-disable". */
  readonly reason: string;
  /** Mappings the revoke waits for (7.1 waits; 6.19 did not). */
  readonly waitingFor: number;
}

/** This package's own events. */
export type DmaBufEvent = DmaBufMapEvent | DmaBufUnmapEvent | DmaBufInvalidateEvent | DmaBufPlaceEvent | DmaBufMoveEvent | DmaBufRevokeEvent;

/** Every event a holder of a dma-buf system sees: the kernel's, the mm model's and this package's. */
export type TraceEvent = HmmTraceEvent | DmaBufEvent;

/** Emits `event` on `trace` (callers test `trace.events.active` first, so nobody listening costs one read). */
export function emitDmaBuf(trace: Trace, event: DmaBufEvent): void {
  trace.events.view<DmaBufEvent>().emit(event);
}
