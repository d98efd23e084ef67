// The events the IOMMU reports on its platform's trace (the kernel's iommu tracepoints: trace_map,
// trace_unmap, trace_io_page_fault; and the invalidations its drivers issue). Address fields carry their
// brand (`Iova`, `PhysAddr`): a type only, so the serialised event (the JSON event log) is a plain number.

import type { PhysAddr } from "@dmasim/memory";
import type { Iova } from "./iova.js";

/** The direction of a device access as the IOMMU checks it against a PTE's permissions. */
export type Access = "read" | "write";
/**
 * Why a translation faulted: no valid leaf for the IOVA, a leaf without the needed permission, or the device attached
 * to no domain (or a blocked one).
 */
export type FaultReason = "not-mapped" | "permission" | "blocked";
/** What an IOTLB invalidation covers: an IOVA range of one domain, one whole domain, or every domain of the unit. */
export type InvalidationScope = "range" | "domain" | "global";

/**
 * `iommu_map` of `size` bytes at `iova` with leaves of `pgsize` bytes (trace_map). A map that uses
 * leaves of several sizes (a 2 MiB-aligned middle between 4 KiB edges) reports one event per run of
 * equal leaves, in address order.
 */
export interface IommuMapEvent {
  /** Names the event: the discriminant of `IommuEvent`. */
  readonly type: "iommu.map";
  /** Virtual time in ns. */
  readonly t: number;
  /** Name of the IOMMU unit. */
  readonly unit: string;
  /** Id of the domain mapped into. */
  readonly domain: number;
  /** First IOVA of the range. */
  readonly iova: Iova;
  /** Physical address the range maps to. */
  readonly phys: PhysAddr;
  /** Bytes mapped. */
  readonly size: number;
  /** IommuProt bits of the new PTEs. */
  readonly prot: number;
  /** Leaf size of this run: 4096, 2 MiB or 1 GiB. */
  readonly pgsize: number;
}

/**
 * `iommu_unmap` asked for `size` bytes and unmapped `unmapped` (trace_unmap); `pgsize` is the size of the
 * leaf found at `iova` (the granule when none was there).
 */
export interface IommuUnmapEvent {
  /** Names the event: the discriminant of `IommuEvent`. */
  readonly type: "iommu.unmap";
  /** Virtual time in ns. */
  readonly t: number;
  /** Name of the IOMMU unit. */
  readonly unit: string;
  /** Id of the domain unmapped from. */
  readonly domain: number;
  /** First IOVA of the range asked for. */
  readonly iova: Iova;
  /** Bytes asked for. */
  readonly size: number;
  /** Bytes actually unmapped (less than `size` over holes). */
  readonly unmapped: number;
  /** Bytes of the leaf found at `iova`: 4096, 2 MiB or 1 GiB (the granule when none was there). */
  readonly pgsize: number;
}

/**
 * An IO page-table page linked into a domain's table (iommu_alloc_pages_node under __iommu_map): the
 * table of `level` (1 holds 4 KiB leaves, 2 holds 2 MiB leaves or level-1 tables, ...) covering the IOVAs
 * from `iova` (aligned to the span of the entry pointing to it).
 */
export interface IommuPtAllocEvent {
  /** Names the event: the discriminant of `IommuEvent`. */
  readonly type: "iommu.pt-alloc";
  /** Virtual time in ns. */
  readonly t: number;
  /** Name of the IOMMU unit. */
  readonly unit: string;
  /** Id of the domain whose page table the page was linked into. */
  readonly domain: number;
  /** Level of the table page: 1 holds 4 KiB leaves, 2 holds 2 MiB leaves or level-1 tables, and so on. */
  readonly level: number;
  /** First IOVA the table covers (aligned to the span of the entry pointing to it). */
  readonly iova: Iova;
}

/**
 * An IO page-table page freed (iommu_put_pages_list after the invalidation that made it unreachable, or
 * at once when a large leaf replaced an empty table). Same fields as `iommu.pt-alloc`.
 */
export interface IommuPtFreeEvent {
  /** Names the event: the discriminant of `IommuEvent`. */
  readonly type: "iommu.pt-free";
  /** Virtual time in ns. */
  readonly t: number;
  /** Name of the IOMMU unit. */
  readonly unit: string;
  /** Id of the domain whose page table the page belonged to. */
  readonly domain: number;
  /** Level of the table page: 1 holds 4 KiB leaves, 2 holds 2 MiB leaves or level-1 tables, and so on. */
  readonly level: number;
  /** First IOVA the table covered (aligned to the span of the entry that pointed to it). */
  readonly iova: Iova;
}

/**
 * What an IOTLB lookup found for a device access: a `hit`, a `miss` (a page-table walk follows), or a
 * `stale-hit`: an entry whose page-table entry was cleared or changed without an invalidation since, so
 * the device reaches the old physical page (the window lazy invalidation opens).
 */
export type IotlbLookupResult = "hit" | "miss" | "stale-hit";

/** One IOTLB lookup of a device access (every translation of a paging domain makes one). */
export interface IotlbLookupEvent {
  /** Names the event: the discriminant of `IommuEvent`. */
  readonly type: "iotlb.lookup";
  /** Virtual time in ns. */
  readonly t: number;
  /** Name of the IOMMU unit. */
  readonly unit: string;
  /** BDF of the device whose access was translated. */
  readonly device: string;
  /** Id of the paging domain the device is attached to. */
  readonly domain: number;
  /** The address the device used. */
  readonly iova: Iova;
  /** Hit, miss or stale-hit. */
  readonly result: IotlbLookupResult;
}

/** The IOTLB caches a leaf the walk after a miss found: `size` bytes from `iova` (the leaf's base) to `phys`. */
export interface IotlbFillEvent {
  /** Names the event: the discriminant of `IommuEvent`. */
  readonly type: "iotlb.fill";
  /** Virtual time in ns. */
  readonly t: number;
  /** Name of the IOMMU unit. */
  readonly unit: string;
  /** Id of the domain the cached entry belongs to. */
  readonly domain: number;
  /** Base IOVA of the cached leaf (aligned to its size). */
  readonly iova: Iova;
  /** Bytes the leaf covers: 4096, 2 MiB or 1 GiB. */
  readonly size: number;
  /** Physical address the leaf maps to (of its first byte). */
  readonly phys: PhysAddr;
}

/** An IOTLB invalidation of a range, a whole domain or every domain of the unit. */
export interface IotlbInvalidateEvent {
  /** Names the event: the discriminant of `IommuEvent`. */
  readonly type: "iotlb.invalidate";
  /** Virtual time in ns. */
  readonly t: number;
  /** Name of the IOMMU unit. */
  readonly unit: string;
  /** Range, domain or global. */
  readonly scope: InvalidationScope;
  /** Id of the domain invalidated; 0 for a global invalidation. */
  readonly domain: number;
  /** First IOVA of a range invalidation; 0 for the other scopes. */
  readonly iova: Iova;
  /** Bytes of a range invalidation; 0 for the other scopes. */
  readonly size: number;
}

/** `iotlb_sync_map` after a map, on units that cache non-present entries. */
export interface IotlbSyncMapEvent {
  /** Names the event: the discriminant of `IommuEvent`. */
  readonly type: "iotlb.sync-map";
  /** Virtual time in ns. */
  readonly t: number;
  /** Name of the IOMMU unit. */
  readonly unit: string;
  /** Id of the domain whose new PTEs were made visible. */
  readonly domain: number;
  /** First IOVA of the synced range. */
  readonly iova: Iova;
  /** Bytes synced. */
  readonly size: number;
}

/** A DMA fault (trace_io_page_fault). */
export interface IommuFaultEvent {
  /** Names the event: the discriminant of `IommuEvent`. */
  readonly type: "iommu.fault";
  /** Virtual time in ns. */
  readonly t: number;
  /** Name of the IOMMU unit that refused the access. */
  readonly unit: string;
  /** BDF of the device that issued the access. */
  readonly device: string;
  /** The address the device used. */
  readonly iova: Iova;
  /** Read or write. */
  readonly access: Access;
  /** Why the translation failed. */
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
