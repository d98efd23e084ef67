import type { DmaAddr, TraceEvent as DmaTraceEvent } from "@dmasim/dma";

// The events the mm model reports on its kernel's trace: hmm_range_fault calls, mmu notifier
// invalidations, hmm_dma_map_pfn / hmm_dma_unmap_pfn per entry, and page migrations. A DMA address carries
// its brand (`DmaAddr`: a type only, the serialised event is a plain number); user virtual addresses have
// no brand and are plain numbers.

/** hmm_range_fault over [start, end) of `mm`: `result` is 0, -EBUSY, -EFAULT or -EPERM. */
export interface HmmRangeFaultEvent {
  /** Names the event: the discriminant of `HmmOdpEvent`. */
  readonly type: "hmm.range-fault";
  /** Virtual time in ns. */
  readonly t: number;
  /** Name of the process whose mm it is (its comm). */
  readonly mm: string;
  /** First virtual address of the range (bytes). */
  readonly start: number;
  /** Virtual address just past the range (bytes, exclusive). */
  readonly end: number;
  /** 0, -EBUSY, -EFAULT or -EPERM. */
  readonly result: number;
}

/**
 * mmu_notifier_invalidate_range_start over [start, end) for `event` (the MMU_NOTIFY_* name: UNMAP,
 * CLEAR, PROTECTION_VMA, MIGRATE, ...), reaching `subscribers` interval notifiers; `result` 0 or -EAGAIN.
 * Only invalidations that reach a notifier are reported.
 */
export interface MmuNotifierInvalidateEvent {
  /** Names the event: the discriminant of `HmmOdpEvent`. */
  readonly type: "mmu-notifier.invalidate";
  /** Virtual time in ns. */
  readonly t: number;
  /** Name of the process whose mm it is (its comm). */
  readonly mm: string;
  /** First virtual address of the invalidated range (bytes). */
  readonly start: number;
  /** Virtual address just past the range (bytes, exclusive). */
  readonly end: number;
  /** The MMU_NOTIFY_* name without its prefix: UNMAP, CLEAR, PROTECTION_VMA, MIGRATE, ... */
  readonly event: string;
  /** Interval notifiers whose range the invalidation overlaps. */
  readonly subscribers: number;
  /** 0, or -EAGAIN when a non-blockable invalidation could not proceed. */
  readonly result: number;
}

/** hmm_dma_map_pfn mapped entry `index` (page frame `pfn`) of a device's hmm_dma_map at `addr`. */
export interface HmmDmaMapPfnEvent {
  /** Names the event: the discriminant of `HmmOdpEvent`. */
  readonly type: "hmm.dma-map-pfn";
  /** Virtual time in ns. */
  readonly t: number;
  /** BDF of the device the hmm_dma_map belongs to. */
  readonly device: string;
  /** Index of the entry in the map (each entry covers dma_entry_size bytes). */
  readonly index: number;
  /** Page frame number of the page mapped (4 KiB frames). */
  readonly pfn: number;
  /** DMA address of the entry: an IOVA with the two-step API, else what dma_map_phys returned. */
  readonly addr: DmaAddr;
}

/** hmm_dma_unmap_pfn undid the mapping of entry `index`. */
export interface HmmDmaUnmapPfnEvent {
  /** Names the event: the discriminant of `HmmOdpEvent`. */
  readonly type: "hmm.dma-unmap-pfn";
  /** Virtual time in ns. */
  readonly t: number;
  /** BDF of the device the hmm_dma_map belongs to. */
  readonly device: string;
  /** Index of the entry whose mapping was undone (each entry covers dma_entry_size bytes). */
  readonly index: number;
}

/**
 * A migration finished (migrate_vma_finalize, migrate_device_finalize): `pages` of the `npages` asked
 * for moved, to device memory or back to system RAM. `start` is the virtual address of the range for
 * migrate_vma and the first device page frame for migrate_device_range (`mm` is then "").
 */
export interface HmmMigrateEvent {
  /** Names the event: the discriminant of `HmmOdpEvent`. */
  readonly type: "hmm.migrate";
  /** Virtual time in ns. */
  readonly t: number;
  /** Name of the process whose range migrated; "" for migrate_device_range. */
  readonly mm: string;
  /** Virtual address of the range (migrate_vma) or first device page frame (migrate_device_range). */
  readonly start: number;
  /** Pages asked for. */
  readonly npages: number;
  /** Pages that migrate; the rest stay where they were. */
  readonly pages: number;
  /** Where the pages went: device memory or system RAM. */
  readonly to: "device" | "system";
}

/** This package's own events. */
export type HmmOdpEvent = HmmRangeFaultEvent | MmuNotifierInvalidateEvent | HmmDmaMapPfnEvent | HmmDmaUnmapPfnEvent | HmmMigrateEvent;

/** Every event a holder of an mm system sees: the DMA kernel's (and the layers below) and this package's. */
export type TraceEvent = DmaTraceEvent | HmmOdpEvent;
