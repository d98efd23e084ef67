/** Plain-text rendering for the terminal: aligned tables and byte sizes. No colours, no dependencies. */

export type Cell = string | number;

/** Renders rows under a header, numbers right-aligned, with a rule under the header. */
export function table(header: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => cellText(r[i]).length)));
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === "number"));
  const line = (cells: readonly Cell[]): string =>
    cells
      .map((c, i) => {
        const text = cellText(c);
        const w = widths[i] ?? text.length;
        return numeric[i] === true ? text.padStart(w) : text.padEnd(w);
      })
      .join("  ")
      .trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

function cellText(c: Cell | undefined): string {
  if (c === undefined) return "";
  if (typeof c === "number") return Number.isInteger(c) ? c.toLocaleString("en-US") : c.toLocaleString("en-US", { maximumFractionDigits: 1 });
  return c;
}

export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1 && v % 1024 === 0) {
    v /= 1024;
    u++;
  }
  return `${v} ${units[u] ?? "B"}`;
}

export function ns(n: number): string {
  if (n >= 1_000_000) return `${(n / 1e6).toLocaleString("en-US", { maximumFractionDigits: 2 })} ms`;
  return n >= 10_000 ? `${(n / 1000).toLocaleString("en-US", { maximumFractionDigits: 1 })} µs` : `${n.toLocaleString("en-US", { maximumFractionDigits: 0 })} ns`;
}
