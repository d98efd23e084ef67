import type { DomainState } from "./replay.js";

/**
 * What a byte of IOVA space is at a step, in the order the view draws them (a later one wins): free,
 * queued (freed in lazy mode, waiting in the flush queue), allocated, linked (mapped), synced
 * (iotlb_sync_map done), stale (unmapped but still translated by an IOTLB entry).
 */
export const IovaState = { FREE: 0, QUEUED: 1, ALLOCATED: 2, LINKED: 3, SYNCED: 4, STALE: 5 } as const;
export type IovaState = (typeof IovaState)[keyof typeof IovaState];
/** Names of the states, indexed by value (for legends and data attributes). */
export const IOVA_STATE_NAMES: readonly string[] = ["free", "queued", "allocated", "linked", "synced", "stale"];

/** IOTLB entries whose translation no longer matches the page table: unmapped (or remapped) but cached. */
export function staleEntries(d: DomainState): { lo: number; hi: number }[] {
  const out: { lo: number; hi: number }[] = [];
  for (const c of d.cached.ranges()) {
    // Entries are 4 KiB; walk the page-granular pieces of the cached range against the mapping.
    for (let p = c.lo; p < c.hi; p += 4096) {
      if (d.mapped.get(p) !== c.val) {
        const last = out[out.length - 1];
        if (last?.hi === p) last.hi = p + 4096;
        else out.push({ lo: p, hi: p + 4096 });
      }
    }
  }
  return out;
}

/** The state of the byte at `addr`. */
export function iovaStateAt(d: DomainState, addr: number): IovaState {
  const cached = d.cached.get(addr);
  const mapped = d.mapped.get(addr);
  if (cached !== undefined && cached !== mapped) return IovaState.STALE;
  if (mapped !== undefined) return d.synced.has(addr) ? IovaState.SYNCED : IovaState.LINKED;
  if (d.allocated.has(addr)) return IovaState.ALLOCATED;
  if (d.queued.has(addr)) return IovaState.QUEUED;
  return IovaState.FREE;
}

/**
 * One state per pixel for a window [lo, hi) drawn `width` pixels wide: the highest state any byte of
 * the pixel's span has, so a single linked granule stays visible at 4 GiB zoom.
 */
export function pixelStates(d: DomainState, lo: number, hi: number, width: number): Uint8Array {
  const px = new Uint8Array(width);
  const span = (hi - lo) / width;
  const paint = (a: number, b: number, state: number): void => {
    const from = Math.max(0, Math.floor((a - lo) / span));
    const to = Math.min(width, Math.max(from + 1, Math.ceil((b - lo) / span)));
    for (let i = from; i < to; i++) if ((px[i] ?? 0) < state) px[i] = state;
  };
  for (const r of d.queued.ranges(lo, hi)) paint(r.lo, r.hi, IovaState.QUEUED);
  for (const r of d.allocated.ranges(lo, hi)) paint(r.lo, r.hi, IovaState.ALLOCATED);
  for (const r of d.mapped.ranges(lo, hi)) paint(r.lo, r.hi, IovaState.LINKED);
  for (const r of d.synced.ranges(lo, hi)) if (d.mapped.overlaps(r.lo, r.hi)) paint(r.lo, r.hi, IovaState.SYNCED);
  for (const r of staleEntries(d)) if (r.hi > lo && r.lo < hi) paint(r.lo, r.hi, IovaState.STALE);
  return px;
}

/** Bytes per state in the whole space (for the legend). */
export function stateTotals(d: DomainState): Record<string, number> {
  let stale = 0;
  for (const r of staleEntries(d)) stale += r.hi - r.lo;
  return { queued: d.queued.bytes(), allocated: d.allocated.bytes(), linked: d.mapped.bytes(), synced: d.synced.bytes(), stale, iotlb: d.cached.bytes() };
}

/** A zoom window of the IOVA space: [lo, hi) clamped to [0, limit), at least one 4 KiB granule wide. */
export function zoomWindow(lo: number, hi: number, limit: number): { lo: number; hi: number } {
  const width = Math.max(4096, Math.min(limit, hi - lo));
  let a = Math.round(Math.max(0, lo) / 4096) * 4096;
  if (a + width > limit) a = limit - width;
  return { lo: a, hi: a + width };
}

/** Zooms [lo, hi) by `factor` (< 1 in, > 1 out) around `at`. */
export function zoom(win: { lo: number; hi: number }, factor: number, at: number, limit: number): { lo: number; hi: number } {
  const width = (win.hi - win.lo) * factor;
  const frac = (at - win.lo) / (win.hi - win.lo);
  return zoomWindow(Math.round(at - frac * width), Math.round(at - frac * width + width), limit);
}

/**
 * The window [lo, hi) cut where any state changes, each piece with its state (free pieces included), at
 * most `max` pieces: the list under the IOVA canvas.
 */
export function segments(d: DomainState, lo: number, hi: number, max = 200): { lo: number; hi: number; state: IovaState }[] {
  const cuts = new Set<number>([lo, hi]);
  for (const m of [d.queued, d.allocated, d.mapped, d.synced, d.cached]) {
    for (const r of m.ranges(lo, hi)) {
      cuts.add(r.lo);
      cuts.add(r.hi);
    }
  }
  // A cached range can hold entries of several mappings: cut it per 4 KiB where it disagrees.
  for (const s of staleEntries(d)) {
    if (s.hi <= lo || s.lo >= hi) continue;
    cuts.add(Math.max(lo, s.lo));
    cuts.add(Math.min(hi, s.hi));
  }
  const xs = [...cuts].sort((a, b) => a - b);
  const out: { lo: number; hi: number; state: IovaState }[] = [];
  for (let i = 0; i + 1 < xs.length && out.length < max; i++) {
    const a = xs[i] ?? 0;
    const b = xs[i + 1] ?? 0;
    const state = iovaStateAt(d, a);
    const last = out[out.length - 1];
    if (last?.state === state && last.hi === a) last.hi = b;
    else out.push({ lo: a, hi: b, state });
  }
  return out;
}
