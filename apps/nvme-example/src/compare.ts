#!/usr/bin/env node
import { performance } from "node:perf_hooks";
import { compareDrivers, formatComparison } from "./comparison.js";

// pnpm --filter @dmasim/nvme-example compare [-- --ops N]
const args = process.argv.slice(2);
const opsArg = args.indexOf("--ops");
const ops = opsArg >= 0 ? Number(args[opsArg + 1]) : 20_000;
if (!Number.isSafeInteger(ops) || ops < 1) {
  process.stderr.write(`--ops ${String(args[opsArg + 1])} is invalid: expected a positive integer\n`);
  process.exit(2);
}
// --cost Name=ns (repeatable) overrides one figure of the cost profile, e.g. --cost IotlbSyncMap=0.
const costProfile: Record<string, number> = {};
args.forEach((a, i) => {
  if (a !== "--cost") return;
  const [name, ns] = (args[i + 1] ?? "").split("=");
  if (name === undefined || name === "" || ns === undefined || !Number.isFinite(Number(ns))) {
    process.stderr.write(`--cost ${String(args[i + 1])} is invalid: expected Counter=nanoseconds, e.g. IotlbSyncMap=0\n`);
    process.exit(2);
  }
  costProfile[name] = Number(ns);
});
const rows = compareDrivers(() => performance.now(), { ops, costProfile });
const overrides = Object.keys(costProfile).length > 0 ? `, cost overrides ${JSON.stringify(costProfile)}` : "";
process.stdout.write(`Per request, ${ops} requests per row after a warm-up, queue depth 32, every byte verified, dma-debug off${overrides}.\n\n`);
process.stdout.write(`${formatComparison(rows)}\n`);
