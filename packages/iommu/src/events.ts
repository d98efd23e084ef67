// The events the IOMMU reports on its platform's trace (the kernel's iommu tracepoints: trace_map,
// trace_unmap, trace_io_page_fault; and the invalidations its drivers issue). Addresses are plain numbers
// in an event: it is a record, read by exporters that know no brand.

export type Access = "read" | "write";
export type FaultReason = "not-mapped" | "permission" | "blocked";
export type InvalidationScope = "range" | "domain" | "global";

/** `iommu_map` of `size` bytes at `iova` (trace_map). */
export interface IommuMapEvent {
  readonly type: "iommu.map";
  readonly t: number;
  readonly unit: string;
  readonly domain: number;
  readonly iova: number;
  readonly phys: number;
  readonly size: number;
  readonly prot: number;
}

/** `iommu_unmap` asked for `size` bytes and unmapped `unmapped` (trace_unmap). */
export interface IommuUnmapEvent {
  readonly type: "iommu.unmap";
  readonly t: number;
  readonly unit: string;
  readonly domain: number;
  readonly iova: number;
  readonly size: number;
  readonly unmapped: number;
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
export type IommuEvent = IommuMapEvent | IommuUnmapEvent | IotlbInvalidateEvent | IotlbSyncMapEvent | IommuFaultEvent;

/** Every event a holder of this package sees: its own (memory, below it, reports none). */
export type TraceEvent = IommuEvent;
