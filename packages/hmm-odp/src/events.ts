import type { TraceEvent as DmaTraceEvent } from "@dmasim/dma";

// The events the mm model reports on its kernel's trace: hmm_range_fault calls, mmu notifier
// invalidations, hmm_dma_map_pfn / hmm_dma_unmap_pfn per entry, and page migrations. Addresses are plain
// numbers (a record for exporters, which know no brand).

/** hmm_range_fault over [start, end) of `mm`: `result` is 0, -EBUSY, -EFAULT or -EPERM. */
export interface HmmRangeFaultEvent {
  readonly type: "hmm.range-fault";
  readonly t: number;
  readonly mm: string;
  readonly start: number;
  readonly end: number;
  readonly result: number;
}

/**
 * mmu_notifier_invalidate_range_start over [start, end) for `event` (the MMU_NOTIFY_* name: UNMAP,
 * CLEAR, PROTECTION_VMA, MIGRATE, ...), reaching `subscribers` interval notifiers; `result` 0 or -EAGAIN.
 * Only invalidations that reach a notifier are reported.
 */
export interface MmuNotifierInvalidateEvent {
  readonly type: "mmu-notifier.invalidate";
  readonly t: number;
  readonly mm: string;
  readonly start: number;
  readonly end: number;
  readonly event: string;
  readonly subscribers: number;
  readonly result: number;
}

/** hmm_dma_map_pfn mapped entry `index` (page frame `pfn`) of a device's hmm_dma_map at `addr`. */
export interface HmmDmaMapPfnEvent {
  readonly type: "hmm.dma-map-pfn";
  readonly t: number;
  readonly device: string;
  readonly index: number;
  readonly pfn: number;
  readonly addr: number;
}

/** hmm_dma_unmap_pfn undid the mapping of entry `index`. */
export interface HmmDmaUnmapPfnEvent {
  readonly type: "hmm.dma-unmap-pfn";
  readonly t: number;
  readonly device: string;
  readonly index: number;
}

/**
 * A migration finished (migrate_vma_finalize, migrate_device_finalize): `pages` of the `npages` asked
 * for moved, to device memory or back to system RAM. `start` is the virtual address of the range for
 * migrate_vma and the first device page frame for migrate_device_range (`mm` is then "").
 */
export interface HmmMigrateEvent {
  readonly type: "hmm.migrate";
  readonly t: number;
  readonly mm: string;
  readonly start: number;
  readonly npages: number;
  readonly pages: number;
  readonly to: "device" | "system";
}

/** This package's own events. */
export type HmmOdpEvent = HmmRangeFaultEvent | MmuNotifierInvalidateEvent | HmmDmaMapPfnEvent | HmmDmaUnmapPfnEvent | HmmMigrateEvent;

/** Every event a holder of an mm system sees: the DMA kernel's (and the layers below) and this package's. */
export type TraceEvent = DmaTraceEvent | HmmOdpEvent;
