import type { LogEvent } from "./events.js";

/** Columns for a uPlot line chart: virtual time, then one cumulative count per event type. */
export interface CountSeries {
  /** Virtual time of each point, in µs. */
  readonly t: number[];
  /** The event types charted, one per series. */
  readonly types: string[];
  /** For each type, the number of its events up to each point. */
  readonly counts: number[][];
}

/**
 * Cumulative event counts over virtual time, for the `top` most frequent types, at most `points` points
 * (one per bucket of equal event count, so a burst is not flattened): what the counters chart draws.
 */
export function countSeries(events: readonly LogEvent[], top = 6, points = 400): CountSeries {
  const total = new Map<string, number>();
  for (const e of events) total.set(e.type, (total.get(e.type) ?? 0) + 1);
  const types = [...total.entries()]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, top)
    .map(([k]) => k);
  const col = new Map(types.map((k, i) => [k, i]));
  const t: number[] = [];
  const counts: number[][] = types.map(() => []);
  const running = types.map(() => 0);
  const every = Math.max(1, Math.ceil(events.length / points));
  events.forEach((e, i) => {
    const c = col.get(e.type);
    if (c !== undefined) running[c] = (running[c] ?? 0) + 1;
    if ((i + 1) % every === 0 || i === events.length - 1) {
      t.push(e.t / 1000);
      running.forEach((v, j) => counts[j]?.push(v));
    }
  });
  return { t, types, counts };
}

/** The rows a virtualised list renders: the first and one past the last index in view (plus `overscan`). */
export function visibleRows(scrollTop: number, viewport: number, rowHeight: number, count: number, overscan = 8): { from: number; to: number } {
  const from = Math.max(0, Math.floor(scrollTop / rowHeight) - overscan);
  const to = Math.min(count, Math.ceil((scrollTop + viewport) / rowHeight) + overscan);
  return { from, to: Math.max(from, to) };
}

/** The scrollTop that brings row `index` into a viewport, or the current one when it is already visible. */
export function scrollToRow(scrollTop: number, viewport: number, rowHeight: number, index: number): number {
  const top = index * rowHeight;
  if (top < scrollTop) return top;
  if (top + rowHeight > scrollTop + viewport) return top + rowHeight - viewport;
  return scrollTop;
}
