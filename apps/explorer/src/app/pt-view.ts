import { pageTableTree, treeTotals, type PtNode } from "../model/page-table.js";
import { LEVEL_SIZE, type DomainState } from "../model/replay.js";
import { bytes, h, hex } from "./dom.js";

const SHOWN = 24;

function nodeEl(n: PtNode, open: boolean): HTMLElement {
  const leafSize = LEVEL_SIZE[n.level] ?? 0;
  const parts = [`L${n.level} table @ ${hex(n.base)}`];
  if (n.leaves > 0) parts.push(`${n.leaves} × ${bytes(leafSize)} leaves`);
  if (n.children.length > 0) parts.push(`${n.children.length} tables below`);
  if (n.emptied > 0) parts.push(`${n.emptied} emptied`);
  const summary = h("summary", { text: parts.join(" · ") });
  const det = h("details", { class: `pt-node level-${n.level}`, "data-level": n.level }, summary);
  if (open) det.open = true;
  const kids = n.children.slice(0, SHOWN).map((c) => nodeEl(c, open && n.children.length <= 2));
  det.append(...kids);
  if (n.children.length > SHOWN) det.append(h("div", { class: "more", text: `… ${n.children.length - SHOWN} more tables` }));
  return det;
}

/** The IO page table of a domain at the step: tables per level, their 4K/2M/1G leaves, emptied tables. */
export function renderPageTable(body: HTMLElement, d: DomainState | undefined, levels: number): void {
  if (d === undefined) {
    body.replaceChildren(h("p", { text: "No IO page table in this run." }));
    return;
  }
  const tree = pageTableTree(d, levels);
  const t = treeTotals(tree);
  body.replaceChildren(
    h("div", { testid: "pt-totals", class: "totals", text: `${t.tables} tables · ${t.leaves4k} × 4 KiB, ${t.leaves2m} × 2 MiB, ${t.leaves1g} × 1 GiB leaves · ${t.emptied} tables emptied or freed` }),
    nodeEl(tree, true),
  );
}
