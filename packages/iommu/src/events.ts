// The events the IOMMU reports on its platform's trace (the kernel's iommu tracepoints: trace_map,
// trace_unmap, trace_io_page_fault; and the invalidations its drivers issue). Addresses are plain numbers
// in an event: it is a record, read by exporters that know no brand.

export type Access = "read" | "write";
export type FaultReason = "not-mapped" | "permission" | "blocked";
export type InvalidationScope = "range" | "domain" | "global";

/**
 * `iommu_map` of `size` bytes at `iova` with leaves of `pgsize` bytes (trace_map). A map that uses
 * leaves of several sizes (a 2 MiB-aligned middle between 4 KiB edges) reports one event per run of
 * equal leaves, in address order.
 */
export interface IommuMapEvent {
  readonly type: "iommu.map";
  readonly t: number;
  readonly unit: string;
  readonly domain: number;
  readonly iova: number;
  readonly phys: number;
  readonly size: number;
  readonly prot: number;
  /** Leaf size of this run: 4096, 2 MiB or 1 GiB. */
  readonly pgsize: number;
}

/**
 * `iommu_unmap` asked for `size` bytes and unmapped `unmapped` (trace_unmap); `pgsize` is the size of the
 * leaf found at `iova` (the granule when none was there).
 */
export interface IommuUnmapEvent {
  readonly type: "iommu.unmap";
  readonly t: number;
  readonly unit: string;
  readonly domain: number;
  readonly iova: number;
  readonly size: number;
  readonly unmapped: number;
  readonly pgsize: number;
}

/**
 * An IO page-table page linked into a domain's table (iommu_alloc_pages_node under __iommu_map): the
 * table of `level` (1 holds 4 KiB leaves, 2 holds 2 MiB leaves or level-1 tables, ...) covering the IOVAs
 * from `iova` (aligned to the span of the entry pointing to it).
 */
export interface IommuPtAllocEvent {
  readonly type: "iommu.pt-alloc";
  readonly t: number;
  readonly unit: string;
  readonly domain: number;
  readonly level: number;
  readonly iova: number;
}

/**
 * An IO page-table page freed (iommu_put_pages_list after the invalidation that made it unreachable, or
 * at once when a large leaf replaced an empty table). Same fields as `iommu.pt-alloc`.
 */
export interface IommuPtFreeEvent {
  readonly type: "iommu.pt-free";
  readonly t: number;
  readonly unit: string;
  readonly domain: number;
  readonly level: number;
  readonly iova: number;
}

/**
 * What an IOTLB lookup found for a device access: a `hit`, a `miss` (a page-table walk follows), or a
 * `stale-hit`: an entry whose page-table entry was cleared or changed without an invalidation since, so
 * the device reaches the old physical page (the window lazy invalidation opens).
 */
export type IotlbLookupResult = "hit" | "miss" | "stale-hit";

/** One IOTLB lookup of a device access (every translation of a paging domain makes one). */
export interface IotlbLookupEvent {
  readonly type: "iotlb.lookup";
  readonly t: number;
  readonly unit: string;
  readonly device: string;
  readonly domain: number;
  readonly iova: number;
  readonly result: IotlbLookupResult;
}

/** The IOTLB caches a leaf the walk after a miss found: `size` bytes from `iova` (the leaf's base) to `phys`. */
export interface IotlbFillEvent {
  readonly type: "iotlb.fill";
  readonly t: number;
  readonly unit: string;
  readonly domain: number;
  readonly iova: number;
  readonly size: number;
  readonly phys: number;
}

/** An IOTLB invalidation of a range, a whole domain or every domain of the unit. */
export interface IotlbInvalidateEvent {
  readonly type: "iotlb.invalidate";
  readonly t: number;
  readonly unit: string;
  readonly scope: InvalidationScope;
  readonly domain: number;
  readonly iova: number;
  readonly size: number;
}

/** `iotlb_sync_map` after a map, on units that cache non-present entries. */
export interface IotlbSyncMapEvent {
  readonly type: "iotlb.sync-map";
  readonly t: number;
  readonly unit: string;
  readonly domain: number;
  readonly iova: number;
  readonly size: number;
}

/** A DMA fault (trace_io_page_fault). */
export interface IommuFaultEvent {
  readonly type: "iommu.fault";
  readonly t: number;
  readonly unit: string;
  readonly device: string;
  readonly iova: number;
  readonly access: Access;
  readonly reason: FaultReason;
}

/** This package's own events. */
export type IommuEvent =
  | IommuMapEvent
  | IommuUnmapEvent
  | IommuPtAllocEvent
  | IommuPtFreeEvent
  | IotlbLookupEvent
  | IotlbFillEvent
  | IotlbInvalidateEvent
  | IotlbSyncMapEvent
  | IommuFaultEvent;

/** Every event a holder of this package sees: its own (memory, below it, reports none). */
export type TraceEvent = IommuEvent;
