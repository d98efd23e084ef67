import { performance } from "node:perf_hooks";
import { UsageError, intOption, parseOptions, runCommand } from "./command.js";
import type { Io } from "./command.js";
import { compareDrivers, formatComparison } from "./comparison.js";

export const COMPARE_HELP = `Usage: pnpm --filter @dmasim/nvme-example compare [-- options]

Runs the same jobs with the scatterlist-era driver and the DMA iterator, in strict and lazy IOMMU mode,
and prints the per-request comparison table.

  --ops N              requests per row after the warm-up (default 20000)
  --cost NAME=NS       override one figure of the cost profile, e.g. IotlbSyncMap=0 (repeatable)
  -h, --help           this text
`;

export interface CompareArgs {
  readonly ops: number;
  readonly costProfile: Readonly<Record<string, number>>;
}

/** The command line checked in full, or "help". */
export function parseCompareArgs(argv: readonly string[]): CompareArgs | "help" {
  const v = parseOptions(argv, { ops: { type: "string" }, cost: { type: "string", multiple: true }, help: { type: "boolean", short: "h" } });
  if (v.help === true) return "help";
  const costProfile: Record<string, number> = {};
  for (const c of v.cost ?? []) {
    const m = /^([A-Za-z][A-Za-z0-9]*)=(.+)$/.exec(c);
    const ns = m?.[2] === undefined ? NaN : Number(m[2]);
    if (m?.[1] === undefined || !Number.isFinite(ns) || ns < 0) {
      throw new UsageError(`--cost ${JSON.stringify(c)} is invalid: expected Counter=nanoseconds, e.g. IotlbSyncMap=0`);
    }
    costProfile[m[1]] = ns;
  }
  return { ops: intOption("ops", v.ops, 20_000, 1), costProfile };
}

/** The compare command: parse, run, print the table. Returns the exit status (runCommand says which). */
export function compareMain(argv: readonly string[], io: Io): number {
  return runCommand("compare", io, () => {
    const a = parseCompareArgs(argv);
    if (a === "help") {
      io.out(COMPARE_HELP);
      return;
    }
    const rows = compareDrivers(() => performance.now(), { ops: a.ops, costProfile: a.costProfile });
    const overrides = Object.keys(a.costProfile).length > 0 ? `, cost overrides ${JSON.stringify(a.costProfile)}` : "";
    io.out(`Per request, ${a.ops} requests per row after a warm-up, queue depth 32, every byte verified, dma-debug off${overrides}.\n\n`);
    io.out(`${formatComparison(rows)}\n`);
  });
}
