import { staleEntries } from "../model/iova-space.js";
import type { ReplayState } from "../model/replay.js";
import { h, hex } from "./dom.js";

const SHOWN = 64;

/**
 * The IOTLB at the step, as the log implies it: an entry for each page a TLP translated, dropped by the
 * invalidations that cover it; an entry whose mapping is gone (lazy mode before the flush queue runs)
 * is stale and shown red. With the running counts of hits, fills, stale hits and invalidations.
 */
export function renderIotlb(body: HTMLElement, s: ReplayState, capacity: number | undefined): void {
  const rows: HTMLElement[] = [];
  let total = 0;
  for (const [id, d] of s.domains) {
    const stale = staleEntries(d);
    const isStale = (p: number): boolean => stale.some((r) => p >= r.lo && p < r.hi);
    for (const r of d.cached.ranges()) {
      for (let p = r.lo; p < r.hi; p += 4096) {
        total++;
        if (rows.length >= SHOWN) continue;
        const st = isStale(p);
        rows.push(h("li", { class: st ? "stale" : "", "data-stale": st, "data-iova": hex(p), text: `domain ${id} · IOVA ${hex(p)} → phys ${hex(p + r.val)}${st ? " · STALE (unmapped)" : ""}` }));
      }
    }
  }
  const inval = s.counts.get("iotlb.invalidate") ?? 0;
  body.replaceChildren(
    h("div", {
      class: "totals",
      testid: "iotlb-totals",
      text: `${total} entries${capacity === undefined ? "" : ` of ${capacity}`} · ${s.iotlbFills} fills (misses) · ${s.iotlbHits} hits · ${s.staleHits} stale hits · ${inval} invalidations`,
    }),
    h("ol", { class: "iotlb-list", testid: "iotlb-entries" }, ...rows),
    ...(total > SHOWN ? [h("div", { class: "more", text: `… ${total - SHOWN} more entries` })] : []),
  );
}
