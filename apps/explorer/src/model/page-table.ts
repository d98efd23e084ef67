import { LEVEL_SIZE, type DomainState } from "./replay.js";

/** One table of the IO page table: its level (4 = top), the IOVA it starts at, and what it holds. */
export interface PtNode {
  readonly level: number;
  readonly base: number;
  /** Leaves written in this table (one per 4 KiB, 2 MiB or 1 GiB page, by the table's level). */
  leaves: number;
  /** The tables below it that still hold a leaf. */
  readonly children: PtNode[];
  /**
   * Tables below it that once held leaves and hold none now (emptied by unmap, or freed); when the log
   * reports page-table pages, the root holds the count of every page freed.
   */
  emptied: number;
}

function tableKey(level: number, base: number): string {
  return `${level}:${base}`;
}

/**
 * The IO page table as a tree at a step: the tables that hold leaves (4-level, 9 bits per level, 4 KiB
 * granule) and, per table, how many of its child tables were emptied since they were used. Derived from
 * the leaves iommu_map wrote, not read from the model, so it can be shown at any step.
 */
export function pageTableTree(d: DomainState, levels = 4): PtNode {
  const root: PtNode = { level: levels, base: 0, leaves: 0, children: [], emptied: 0 };
  const nodes = new Map<string, PtNode>([[tableKey(levels, 0), root]]);
  const tableFor = (level: number, addr: number): PtNode => {
    // The table at `level` covering addr, creating its ancestors.
    const span = LEVEL_SIZE[level + 1] ?? 0;
    const base = level === levels ? 0 : addr - (addr % span);
    const key = tableKey(level, base);
    const found = nodes.get(key);
    if (found !== undefined) return found;
    const node: PtNode = { level, base, leaves: 0, children: [], emptied: 0 };
    nodes.set(key, node);
    tableFor(level + 1, addr).children.push(node);
    return node;
  };
  for (let leafLevel = 1; leafLevel <= 3; leafLevel++) {
    const size = LEVEL_SIZE[leafLevel] ?? 4096;
    for (const r of d.leaves[leafLevel]?.ranges() ?? []) {
      // One table per `LEVEL_SIZE[leafLevel + 1]` span the range crosses holds its leaves.
      const tableSpan = LEVEL_SIZE[leafLevel + 1] ?? size;
      for (let a = r.lo; a < r.hi; ) {
        const end = Math.min(r.hi, a - (a % tableSpan) + tableSpan);
        tableFor(leafLevel, a).leaves += (end - a) / size;
        a = end;
      }
    }
  }
  const explicit = d.tables.some((t) => t.size > 0) || d.tablesFreed.some((n) => n > 0);
  if (explicit) {
    // The log reports page-table pages (iommu.pt-alloc / iommu.pt-free): show every live one, leaves or
    // not, and count the freed ones at the top.
    for (let lvl = 1; lvl < levels; lvl++) {
      const span = LEVEL_SIZE[lvl + 1] ?? 0;
      for (const r of d.tables[lvl]?.ranges() ?? []) for (let a = r.lo; a < r.hi; a += span) tableFor(lvl, a);
    }
    root.emptied = d.tablesFreed.reduce((x, y) => x + y, 0);
  }
  // Without such events: tables once used and now without a leaf, from what was ever mapped at 2 MiB
  // (level-1 table) and 1 GiB (level-2 table) granularity.
  for (const lvl of explicit ? [] : [1, 2]) {
    const span = LEVEL_SIZE[lvl + 1] ?? 0;
    const seen = new Set<number>();
    for (const r of d.everMapped.ranges()) {
      for (let a = r.lo - (r.lo % span); a < r.hi; a += span) {
        if (seen.has(a) || nodes.has(tableKey(lvl, a))) continue;
        seen.add(a);
        const parentLevel = lvl + 1;
        const parentSpan = LEVEL_SIZE[parentLevel + 1] ?? 0;
        const parent = nodes.get(tableKey(parentLevel, parentLevel === levels ? 0 : a - (a % parentSpan)));
        // Only count level-1 tables under a parent that still exists; a vanished parent counts itself.
        if (parent !== undefined) parent.emptied++;
        else if (lvl === 2) root.emptied++;
      }
    }
  }
  const sort = (n: PtNode): void => {
    n.children.sort((a, b) => a.base - b.base);
    n.children.forEach(sort);
  };
  sort(root);
  return root;
}

/** Counts over a tree: tables per level and leaves per leaf size. */
export function treeTotals(root: PtNode): { tables: number; leaves4k: number; leaves2m: number; leaves1g: number; emptied: number } {
  const out = { tables: 0, leaves4k: 0, leaves2m: 0, leaves1g: 0, emptied: 0 };
  const walk = (n: PtNode): void => {
    out.tables++;
    out.emptied += n.emptied;
    if (n.level === 1) out.leaves4k += n.leaves;
    else if (n.level === 2) out.leaves2m += n.leaves;
    else if (n.level === 3) out.leaves1g += n.leaves;
    n.children.forEach(walk);
  };
  walk(root);
  return out;
}
