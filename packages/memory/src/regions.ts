import type { PhysAddr } from "./addresses.js";
import type { SparseStore } from "./sparse-store.js";

/** RAM (System RAM) or a device's MMIO range. */
export type RegionKind = "ram" | "mmio";

/** One entry of the physical address map, as /proc/iomem would list it. */
export interface RegionInfo {
  /** RAM or MMIO. */
  readonly kind: RegionKind;
  /** Physical address of the first byte. */
  readonly base: PhysAddr;
  /** Bytes in the region. */
  readonly size: number;
  /** The name /proc/iomem would show, e.g. "System RAM". */
  readonly name: string;
  /** Who owns the range, e.g. the BDF of the device whose BAR it is. */
  readonly owner: string | undefined;
}

/** A region with its bytes (package-private: not exported from index.ts); `store` is undefined for MMIO with no backing. */
export interface Region {
  readonly info: RegionInfo;
  readonly base: number;
  readonly end: number;
  readonly store: SparseStore | undefined;
}

/**
 * The regions sorted by base, non-overlapping. Lookups binary-search the sorted bases; callers on hot
 * paths keep the last region they hit and only come here on a miss.
 */
export class RegionTable {
  #regions: Region[] = [];
  #infos: readonly RegionInfo[] = Object.freeze([]);

  get list(): readonly Region[] {
    return this.#regions;
  }

  get infos(): readonly RegionInfo[] {
    return this.#infos;
  }

  /** Index of the region containing `phys`, or -1. */
  indexOf(phys: number): number {
    const rs = this.#regions;
    let lo = 0;
    let hi = rs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const r = rs[mid];
      if (r === undefined || phys < r.base) hi = mid - 1;
      else if (phys >= r.end) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  at(index: number): Region | undefined {
    return this.#regions[index];
  }

  /** The first region that overlaps [base, end), or undefined. */
  overlapping(base: number, end: number): Region | undefined {
    for (const r of this.#regions) if (r.base < end && base < r.end) return r;
    return undefined;
  }

  insert(region: Region): void {
    const rs = this.#regions;
    let i = 0;
    while (i < rs.length && (rs[i]?.base ?? Infinity) < region.base) i++;
    rs.splice(i, 0, region);
    this.#refresh();
  }

  remove(region: Region): void {
    const i = this.#regions.indexOf(region);
    if (i >= 0) this.#regions.splice(i, 1);
    this.#refresh();
  }

  #refresh(): void {
    this.#infos = Object.freeze(this.#regions.map((r) => r.info));
  }
}
