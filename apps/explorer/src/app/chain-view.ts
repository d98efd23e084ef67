import { fieldsOf, type LogEvent } from "../model/events.js";
import { dmabufView, hmmView } from "../model/mm-views.js";
import { h, hex } from "./dom.js";

/** Event types of the memory-management layers: HMM/ODP page chains and dma-buf placement. */
export const CHAIN_TYPE = /^(hmm|odp|mmu|migrate|dmabuf|umem|rdma)/;
const HMM_TYPE = /^(hmm\.|mmu-notifier\.)/;

/** Indices of a run's HMM/ODP/dma-buf events. */
export function chainIndices(events: readonly LogEvent[]): number[] {
  const out: number[] = [];
  for (const [i, e] of events.entries()) if (CHAIN_TYPE.test(e.type)) out.push(i);
  return out;
}

/** The field that names what an event is about: a page (va, pfn), a buffer or an MR. */
function keyOf(e: LogEvent): string {
  const f = Object.fromEntries(fieldsOf(e));
  for (const k of ["va", "addr", "pfn", "buffer", "buf", "mr", "name", "importer", "exporter"]) {
    const v = f[k];
    if (typeof v === "number") return `${k} 0x${v.toString(16)}`;
    if (typeof v === "string") return `${k} ${v}`;
  }
  return e.type.split(".")[0] ?? e.type;
}

/**
 * HMM/ODP and dma-buf events up to the step, grouped by what they are about (a page, a buffer), the
 * latest first: each page's chain (fault, pfn, IOVA, invalidation) or each buffer's placement and
 * importers, as far as the run's events tell. Hidden when the run has none.
 */
export function renderChain(body: HTMLElement, events: readonly LogEvent[], indices: readonly number[], step: number, deviceView: (addr: number) => string): boolean {
  const parts: HTMLElement[] = [];
  const hmm = hmmView(events, indices.filter((i) => HMM_TYPE.test(events[i]?.type ?? "")), step);
  if (hmm.pages.length > 0 || hmm.invalidations.length > 0) {
    parts.push(
      h("h3", { testid: "hmm-summary", "data-mapped": hmm.pages.filter((p) => p.mapped).length, "data-seen": hmm.pages.length, text: `HMM pages: ${hmm.pages.filter((p) => p.mapped).length} mapped of ${hmm.pages.length} seen, after ${hmm.faults.length} hmm_range_fault calls` }),
      h(
        "table",
        { class: "chain-table", testid: "hmm-pages" },
        h("tr", {}, ...["device", "index", "pfn", "DMA address", "device view now", "state"].map((t) => h("th", { text: t }))),
        // The 64 pages touched last, latest first: what the step just did is on top.
        ...[...hmm.pages].sort((a, b) => b.last - a.last).slice(0, 64).map((p) =>
          h(
            "tr",
            { class: p.mapped ? "" : "gone", "data-index": p.index, "data-mapped": p.mapped },
            h("td", { text: p.device }),
            h("td", { text: p.index }),
            h("td", { text: hex(p.pfn) }),
            h("td", { text: hex(p.addr) }),
            h("td", { text: deviceView(p.addr) }),
            h("td", { text: p.mapped ? `mapped (#${p.last + 1})` : `unmapped (#${p.last + 1})` }),
          ),
        ),
      ),
      h(
        "ol",
        { class: "chain", testid: "hmm-invalidations" },
        ...hmm.invalidations.slice(-20).map((v) => h("li", { text: `#${v.index + 1} invalidate ${v.event} ${hex(v.start)}–${hex(v.end)}: removed ${v.removed.length === 0 ? "nothing" : v.removed.join(", ")}` })),
      ),
    );
  }
  const bufs = dmabufView(events, indices, step);
  if (bufs.length > 0) {
    parts.push(
      h("h3", { text: "dma-bufs: where each lives and who maps it" }),
      h(
        "table",
        { class: "chain-table", testid: "dmabuf-bufs" },
        h("tr", {}, ...["buffer", "placement", "moves", "invalidations", "importers"].map((t) => h("th", { text: t }))),
        ...bufs.map((b) =>
          h(
            "tr",
            { "data-buf": b.buf, "data-placement": b.placement },
            h("td", { text: `${b.exporter} #${b.buf}${b.revoked ? " (revoked)" : ""}` }),
            h("td", { text: b.totalBlocks === 0 ? b.placement : `${b.placement} (${b.inVram}/${b.totalBlocks} blocks in VRAM)` }),
            h("td", { text: b.moves }),
            h("td", { text: b.invalidations }),
            h("td", { text: [...b.importers].map(([d, m]) => `${d} ${m.kind} ${m.mapped ? "mapped" : "unmapped"}`).join("; ") }),
          ),
        ),
      ),
    );
  }
  if (parts.length > 0) {
    body.replaceChildren(...parts);
    return true;
  }
  const groups = new Map<string, { i: number; e: LogEvent }[]>();
  for (const i of indices) {
    if (i >= step) break;
    const e = events[i];
    if (e === undefined) continue;
    const k = keyOf(e);
    const g = groups.get(k) ?? [];
    g.push({ i, e });
    groups.set(k, g);
  }
  if (groups.size === 0) {
    body.replaceChildren(h("p", { text: "No HMM, ODP or dma-buf events up to this step." }));
    return false;
  }
  const items = [...groups.entries()].slice(-40).map(([k, g]) =>
    h(
      "li",
      { "data-key": k },
      h("b", { text: k }),
      " ",
      ...g.slice(-6).map(({ i, e }) => h("span", { class: "chain-step", title: JSON.stringify(e), text: `#${i + 1} ${e.type}` })),
    ),
  );
  body.replaceChildren(h("ol", { class: "chain", testid: "chain" }, ...items));
  return true;
}
