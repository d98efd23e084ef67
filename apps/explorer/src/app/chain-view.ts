import { fieldsOf, type LogEvent } from "../model/events.js";
import { h } from "./dom.js";

/** Event types of the memory-management layers: HMM/ODP page chains and dma-buf placement. */
export const CHAIN_TYPE = /^(hmm|odp|mmu|migrate|dmabuf|umem|rdma)/;

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
export function renderChain(body: HTMLElement, events: readonly LogEvent[], indices: readonly number[], step: number): boolean {
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
