import type { Trace } from "@dmasim/trace";
import type { TraceEvent as HmmTraceEvent } from "@dmasim/hmm-odp";

// The events the dma-buf core and its exporters report on the kernel's trace: mappings of attachments,
// invalidations, moves between VRAM and RAM, and revokes. A buffer is named by its exporter name and
// inode number, as /sys/kernel/debug/dma_buf/bufinfo lists it.

/** How an attachment's mapping is handed out: an sg_table, or dmasim's physical-range list. */
export type DmaBufMappingKind = "sgt" | "phys";

/** dma_buf_map_attachment (or the physical-range list's map) handed `device` a mapping of the buffer. */
export interface DmaBufMapEvent {
  readonly type: "dmabuf.map";
  readonly t: number;
  readonly buf: number;
  readonly exporter: string;
  readonly device: string;
  readonly kind: DmaBufMappingKind;
  readonly size: number;
}

/** dma_buf_unmap_attachment: `device` gave a mapping back. */
export interface DmaBufUnmapEvent {
  readonly type: "dmabuf.unmap";
  readonly t: number;
  readonly buf: number;
  readonly exporter: string;
  readonly device: string;
  readonly kind: DmaBufMappingKind;
}

/**
 * dma_buf_invalidate_mappings (dma_buf_move_notify up to 7.0): every importer with a callback was told
 * to drop its mappings; `importers` callbacks ran, `pending` mappings are invalidated and not yet unmapped.
 */
export interface DmaBufInvalidateEvent {
  readonly type: "dmabuf.invalidate";
  readonly t: number;
  readonly buf: number;
  readonly exporter: string;
  readonly reason: string;
  readonly importers: number;
  readonly pending: number;
}

/** Where a GPU buffer's blocks live. */
export type DmaBufPlacement = "vram" | "ram";

/** The GPU exporter moved `blocks` blocks (`bytes` bytes) of a buffer to `to`; `inVram` blocks are in VRAM after. */
export interface DmaBufMoveEvent {
  readonly type: "dmabuf.move";
  readonly t: number;
  readonly buf: number;
  readonly exporter: string;
  readonly to: DmaBufPlacement;
  readonly blocks: number;
  readonly bytes: number;
  readonly inVram: number;
  readonly totalBlocks: number;
}

/**
 * vfio-pci revoked a buffer (`revoked` true: memory disabled, reset, close) or made it usable again;
 * `waitingFor` mappings the importers have not unmapped yet.
 */
export interface DmaBufRevokeEvent {
  readonly type: "dmabuf.revoke";
  readonly t: number;
  readonly buf: number;
  readonly exporter: string;
  readonly revoked: boolean;
  readonly reason: string;
  readonly waitingFor: number;
}

/** This package's own events. */
export type DmaBufEvent = DmaBufMapEvent | DmaBufUnmapEvent | DmaBufInvalidateEvent | DmaBufMoveEvent | DmaBufRevokeEvent;

/** Every event a holder of a dma-buf system sees: the kernel's, the mm model's and this package's. */
export type TraceEvent = HmmTraceEvent | DmaBufEvent;

/** Emits `event` on `trace` (callers test `trace.events.active` first, so nobody listening costs one read). */
export function emitDmaBuf(trace: Trace, event: DmaBufEvent): void {
  trace.events.view<DmaBufEvent>().emit(event);
}
