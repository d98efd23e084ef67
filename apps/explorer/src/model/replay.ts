import { field, num, str, type LogEvent } from "./events.js";
import { staleEntries } from "./iova-space.js";
import { RangeMap } from "./range-map.js";

/** Leaf sizes of the x86/ARM 4-level IO page table: level 1 maps 4 KiB, level 2 2 MiB, level 3 1 GiB. */
export const LEVEL_SIZE: readonly number[] = [0, 4096, 2 * 1024 * 1024, 1024 * 1024 * 1024, 512 * 1024 ** 3];
/** pgsize_bitmap of the modelled IOMMU unless the run says otherwise: 4K | 2M | 1G. */
export const DEFAULT_PGSIZE_BITMAP = 4096 + 2 * 1024 * 1024 + 1024 * 1024 * 1024;

/** What one IOMMU domain holds at a step, derived from the events up to it. */
export interface DomainState {
  /** Mapped (linked) IOVA ranges; the value is phys - iova. */
  readonly mapped: RangeMap;
  /** Ranges made visible by iotlb_sync_map since they were mapped (units that cache non-present entries). */
  readonly synced: RangeMap;
  /** IOVA ranges the allocator handed out (from allocator events, when the log has them). */
  readonly allocated: RangeMap;
  /** Freed IOVA ranges waiting in the flush queue (lazy mode) until a release makes them reusable. */
  readonly queued: RangeMap;
  /** IO page-table pages per level (index 1..4) as `iommu.pt-alloc` / `iommu.pt-free` report them. */
  readonly tables: readonly [RangeMap, RangeMap, RangeMap, RangeMap, RangeMap];
  /** Page-table pages freed so far, per level. */
  readonly tablesFreed: number[];
  /** IOTLB entries, 4 KiB each as filled; the value is the phys - iova the entry was filled with. */
  readonly cached: RangeMap;
  /** Leaves of the IO page table per level (index 1..3), as iommu_pgsize chose them for each map. */
  readonly leaves: readonly [RangeMap, RangeMap, RangeMap, RangeMap];
  /** Every range ever mapped: the tables that existed for them and hold no leaf now were emptied or freed. */
  readonly everMapped: RangeMap;
}

/** Where the replay stands after a step. */
export interface ReplayState {
  /** Events applied (the state after event step - 1). */
  step: number;
  /** Virtual time of the last event applied. */
  t: number;
  readonly domains: Map<number, DomainState>;
  /** Events seen so far per type. */
  readonly counts: Map<string, number>;
  /** Index of the last TLP (or Unsupported Request) event applied, -1 before any. */
  lastTlp: number;
  /** IOTLB lookups the replay saw hit a stale entry (a TLP translated by an entry whose mapping is gone). */
  staleHits: number;
  /** IOTLB lookups by TLPs that hit (stale ones included) and that missed and filled an entry. */
  iotlbHits: number;
  iotlbFills: number;
}

/** What the replay needs besides the events: which domain each device's DMA goes through. */
export interface ReplayContext {
  /** Device BDF → IOMMU domain id (devices in a DMA domain only). */
  readonly deviceDomain: Readonly<Record<string, number>>;
  /** The page sizes the IO page table may use as leaves. */
  readonly pgsizeBitmap?: number;
  /**
   * The log reports IOTLB fills and lookups itself (`iotlb.fill`, `iotlb.lookup`): the replay takes the
   * IOTLB from them instead of inferring it from the TLPs. Set by Replay from the log.
   */
  readonly explicitIotlb?: boolean;
}

/** Level of a leaf of `size` bytes (1: 4 KiB, 2: 2 MiB, 3: 1 GiB), or undefined. */
function leafLevel(size: number | undefined): number | undefined {
  const l = size === undefined ? -1 : LEVEL_SIZE.indexOf(size);
  return l >= 1 && l <= 3 ? l : undefined;
}

/** The domain an event is about: its `domain` field, or the domain of its `device`. */
function eventDomain(e: LogEvent, ctx: ReplayContext): number | undefined {
  return num(e, "domain") ?? ctx.deviceDomain[str(e, "device") ?? ""];
}

function newDomain(): DomainState {
  return {
    mapped: new RangeMap(),
    synced: new RangeMap(),
    allocated: new RangeMap(),
    queued: new RangeMap(),
    tables: [new RangeMap(), new RangeMap(), new RangeMap(), new RangeMap(), new RangeMap()],
    tablesFreed: [0, 0, 0, 0, 0],
    cached: new RangeMap(),
    leaves: [new RangeMap(), new RangeMap(), new RangeMap(), new RangeMap()],
    everMapped: new RangeMap(),
  };
}

function cloneDomain(d: DomainState): DomainState {
  return {
    mapped: d.mapped.clone(),
    synced: d.synced.clone(),
    allocated: d.allocated.clone(),
    queued: d.queued.clone(),
    tables: [d.tables[0].clone(), d.tables[1].clone(), d.tables[2].clone(), d.tables[3].clone(), d.tables[4].clone()],
    tablesFreed: d.tablesFreed.slice(),
    cached: d.cached.clone(),
    leaves: [d.leaves[0].clone(), d.leaves[1].clone(), d.leaves[2].clone(), d.leaves[3].clone()],
    everMapped: d.everMapped.clone(),
  };
}

/** The state before any event. */
export function initialState(): ReplayState {
  return { step: 0, t: 0, domains: new Map(), counts: new Map(), lastTlp: -1, staleHits: 0, iotlbHits: 0, iotlbFills: 0 };
}

/** A copy sharing nothing with `s`. */
export function cloneState(s: ReplayState): ReplayState {
  const domains = new Map<number, DomainState>();
  for (const [id, d] of s.domains) domains.set(id, cloneDomain(d));
  return { step: s.step, t: s.t, domains, counts: new Map(s.counts), lastTlp: s.lastTlp, staleHits: s.staleHits, iotlbHits: s.iotlbHits, iotlbFills: s.iotlbFills };
}

function domainOf(s: ReplayState, id: number): DomainState {
  let d = s.domains.get(id);
  if (d === undefined) {
    d = newDomain();
    s.domains.set(id, d);
  }
  return d;
}

/**
 * The leaves iommu_map writes for [iova, iova + size) → phys: at each step the largest page size that
 * the bitmap allows and that iova, phys and the remaining size are all aligned to (iommu_pgsize).
 */
export function leavesFor(iova: number, phys: number, size: number, pgsizeBitmap: number): { iova: number; level: number; size: number }[] {
  const out: { iova: number; level: number; size: number }[] = [];
  let off = 0;
  while (off < size) {
    let level = 1;
    for (let l = 3; l >= 1; l--) {
      const ps = LEVEL_SIZE[l] ?? 4096;
      if ((pgsizeBitmap & ps) === 0) continue;
      if ((iova + off) % ps === 0 && (phys + off) % ps === 0 && size - off >= ps) {
        level = l;
        break;
      }
    }
    const ps = LEVEL_SIZE[level] ?? 4096;
    // Coalesce runs of same-level leaves into one record.
    const last = out[out.length - 1];
    if (last?.level === level && last.iova + last.size === iova + off) last.size += ps;
    else out.push({ iova: iova + off, level, size: ps });
    off += ps;
  }
  return out;
}

const PAGE = 4096;

/** Applies event `e` (at index `index` of the log) to `s`, in place. */
export function applyEvent(s: ReplayState, e: LogEvent, index: number, ctx: ReplayContext): void {
  s.step = index + 1;
  s.t = e.t;
  s.counts.set(e.type, (s.counts.get(e.type) ?? 0) + 1);
  switch (e.type) {
    case "iommu.map": {
      const d = domainOf(s, num(e, "domain") ?? 0);
      const iova = num(e, "iova") ?? 0;
      const size = num(e, "size") ?? 0;
      const phys = num(e, "phys") ?? 0;
      d.mapped.set(iova, iova + size, phys - iova);
      d.everMapped.set(iova, iova + size);
      // The log names the leaf size of each run of leaves; older logs do not, and iommu_pgsize is redone.
      const level = leafLevel(num(e, "pgsize"));
      if (level !== undefined) {
        d.leaves[level]?.set(iova, iova + size);
        return;
      }
      for (const leaf of leavesFor(iova, phys, size, ctx.pgsizeBitmap ?? DEFAULT_PGSIZE_BITMAP)) {
        d.leaves[leaf.level]?.set(leaf.iova, leaf.iova + leaf.size);
      }
      return;
    }
    case "iommu.unmap": {
      const d = domainOf(s, num(e, "domain") ?? 0);
      const iova = num(e, "iova") ?? 0;
      const end = iova + (num(e, "unmapped") ?? num(e, "size") ?? 0);
      d.mapped.delete(iova, end);
      d.synced.delete(iova, end);
      for (const l of d.leaves) l.delete(iova, end);
      return;
    }
    case "iotlb.sync-map": {
      const d = domainOf(s, num(e, "domain") ?? 0);
      const iova = num(e, "iova") ?? 0;
      d.synced.set(iova, iova + (num(e, "size") ?? 0));
      return;
    }
    case "iotlb.invalidate": {
      const scope = str(e, "scope");
      if (scope === "global") {
        for (const d of s.domains.values()) d.cached.delete(0, Number.MAX_SAFE_INTEGER);
        return;
      }
      const d = domainOf(s, num(e, "domain") ?? 0);
      if (scope === "domain") d.cached.delete(0, Number.MAX_SAFE_INTEGER);
      else {
        const iova = num(e, "iova") ?? 0;
        d.cached.delete(iova, iova + (num(e, "size") ?? 0));
      }
      return;
    }
    case "iova.alloc":
    case "iova.free":
    case "flush-queue.release": {
      const dom = eventDomain(e, ctx);
      const iova = num(e, "iova");
      const size = num(e, "size");
      if (dom === undefined || iova === undefined || size === undefined) return;
      const d = domainOf(s, dom);
      if (e.type === "iova.alloc") d.allocated.set(iova, iova + size);
      else if (e.type === "iova.free" && field(e, "queued") === true) {
        // Lazy mode: the range waits in the flush queue, not reusable until its release.
        d.allocated.delete(iova, iova + size);
        d.queued.set(iova, iova + size);
      } else {
        d.allocated.delete(iova, iova + size);
        d.queued.delete(iova, iova + size);
      }
      return;
    }
    case "iommu.pt-alloc":
    case "iommu.pt-free": {
      const dom = num(e, "domain");
      const level = num(e, "level");
      const iova = num(e, "iova");
      if (dom === undefined || level === undefined || iova === undefined || level < 1 || level > 4) return;
      const d = domainOf(s, dom);
      const span = LEVEL_SIZE[level + 1] ?? 2 ** 48;
      if (e.type === "iommu.pt-alloc") d.tables[level]?.set(iova, iova + span);
      else {
        d.tables[level]?.delete(iova, iova + span);
        d.tablesFreed[level] = (d.tablesFreed[level] ?? 0) + 1;
      }
      return;
    }
    case "iotlb.fill": {
      const dom = num(e, "domain");
      const iova = num(e, "iova");
      const size = num(e, "size");
      const phys = num(e, "phys");
      if (dom === undefined || iova === undefined || size === undefined || phys === undefined) return;
      const d = domainOf(s, dom);
      d.cached.set(iova, iova + size, phys - iova);
      // A fill of a range the log never saw mapped was mapped before recording began (a driver's queues
      // set up before the workload): a walk found it, so it is mapped, not stale.
      if (!d.everMapped.overlaps(iova, iova + size)) {
        d.mapped.set(iova, iova + size, phys - iova);
        d.everMapped.set(iova, iova + size);
      }
      s.iotlbFills++;
      return;
    }
    case "iotlb.lookup": {
      const result = str(e, "result");
      if (result === "hit") s.iotlbHits++;
      else if (result === "stale-hit") {
        s.iotlbHits++;
        s.staleHits++;
      }
      return;
    }
    case "tlp":
    case "unsupported-request": {
      s.lastTlp = index;
      if (ctx.explicitIotlb === true || e.type !== "tlp" || str(e, "path") === "peer-via-switch") return;
      const dom = ctx.deviceDomain[str(e, "device") ?? ""];
      if (dom === undefined) return;
      const d = domainOf(s, dom);
      const addr = num(e, "addr") ?? 0;
      const page = addr - (addr % PAGE);
      const cached = d.cached.get(page);
      if (cached !== undefined) {
        s.iotlbHits++;
        if (d.mapped.get(page) !== cached) s.staleHits++;
        return;
      }
      const delta = d.mapped.get(page);
      if (delta !== undefined) {
        d.cached.set(page, page + PAGE, delta);
        s.iotlbFills++;
      }
      return;
    }
    default:
      return;
  }
}

/**
 * The replay of one run's log with a checkpoint every `every` events, so the state at any step costs at
 * most `every` applications: scrubbing backwards never replays from the start.
 */
export class Replay {
  readonly events: readonly LogEvent[];
  readonly ctx: ReplayContext;
  readonly #every: number;
  readonly #checkpoints: ReplayState[] = [];
  /** Indices of the TLPs an IOTLB entry translated after its mapping was gone (stale hits). */
  readonly staleTlps: readonly number[];

  /** IOTLB occupancy along the run: at each sampled step, the entries cached and how many are stale. */
  readonly iotlbSeries: { readonly step: number[]; readonly entries: number[]; readonly stale: number[] };

  constructor(events: readonly LogEvent[], ctx: ReplayContext, every = 2048, samples = 300) {
    this.events = events;
    this.ctx = { ...ctx, explicitIotlb: ctx.explicitIotlb ?? events.some((e) => e.type === "iotlb.fill") };
    this.#every = every;
    const s = initialState();
    const stale: number[] = [];
    const series = { step: [0], entries: [0], stale: [0] };
    const sampleEvery = Math.max(1, Math.ceil(events.length / samples));
    this.#checkpoints.push(cloneState(s));
    for (const [i, e] of events.entries()) {
      const before = s.staleHits;
      applyEvent(s, e, i, this.ctx);
      // A stale hit: a TLP (or the lookup that preceded it) translated through a dead entry.
      if (s.staleHits !== before) stale.push(i);
      if ((i + 1) % every === 0) this.#checkpoints.push(cloneState(s));
      if ((i + 1) % sampleEvery === 0 || i === events.length - 1) {
        let entries = 0;
        let st = 0;
        for (const d of s.domains.values()) {
          entries += d.cached.bytes() / 4096;
          for (const r of staleEntries(d)) st += (r.hi - r.lo) / 4096;
        }
        series.step.push(i + 1);
        series.entries.push(entries);
        series.stale.push(st);
      }
    }
    this.staleTlps = stale;
    this.iotlbSeries = series;
  }

  /** The state after the first `step` events (0: before any; events.length: the end of the run). */
  stateAt(step: number): ReplayState {
    const n = Math.max(0, Math.min(step, this.events.length));
    const cp = this.#checkpoints[Math.floor(n / this.#every)] ?? initialState();
    const s = cloneState(cp);
    for (let i = s.step; i < n; i++) {
      const e = this.events[i];
      if (e !== undefined) applyEvent(s, e, i, this.ctx);
    }
    return s;
  }
}
