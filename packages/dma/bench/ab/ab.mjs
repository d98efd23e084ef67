// A/B of a dma benchmark file between source trees (worktrees of this repository at two commits), in
// alternating processes, as `vitest bench` runs it (tinybench, one awaited call per iteration; shim.mjs)
// but with the process under this script's control: V8 flags can be added (--node-flag=--trace-gc), and
// one benchmark body can be run against every tree (--body), so that a ratio compares the code and not
// two versions of the benchmark file. Prints each run's medians and, per case, the median of each tree's
// run medians and the median of the per-round ratios to the first tree. From the repository root:
//
//   node packages/dma/bench/ab/ab.mjs [--rounds=4] [--filter="two-step, strict, dma-debug off"]
//        [--file=src/dma.bench.ts] [--body=<bench file>] [--node-flag=<flag>]… <tree> <tree>…
//
// Each tree must have its dependencies installed; its own scripts/bench-loader compiles its sources.
import { spawnSync } from "node:child_process";
import { loadavg } from "node:os";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const here = new URL(".", import.meta.url);

if (process.argv[2] === "--child") {
  const [, , , file, filter] = process.argv;
  const shim = await import("vitest");
  await import(file);
  console.log(JSON.stringify(await shim.runCases(filter)));
} else {
  const opts = { rounds: 4, filter: "two-step, strict, dma-debug off", file: "src/dma.bench.ts", body: undefined, flags: [] };
  const trees = [];
  for (const a of process.argv.slice(2)) {
    const m = /^--([a-z-]+)=(.*)$/s.exec(a);
    if (m === null) trees.push(resolve(a));
    else if (m[1] === "rounds") opts.rounds = Number(m[2]);
    else if (m[1] === "filter") opts.filter = m[2];
    else if (m[1] === "file") opts.file = m[2];
    else if (m[1] === "body") opts.body = pathToFileURL(resolve(m[2])).href;
    else if (m[1] === "node-flag") opts.flags.push(m[2]);
    else throw new Error(`unknown option ${a}`);
  }
  if (trees.length === 0 || !(opts.rounds >= 1)) throw new Error("usage: ab.mjs [options] <tree> <tree>…");
  /** results[case][tree] = medians of the runs, in round order */
  const results = new Map();
  for (let round = 1; round <= opts.rounds; round++) {
    for (const tree of trees) {
      const file = opts.body ?? pathToFileURL(resolve(tree, "packages/dma", opts.file)).href;
      const env = { ...process.env };
      if (opts.body !== undefined) {
        env.DMASIM_AB_BODY = opts.body;
        env.DMASIM_AB_SRC = pathToFileURL(resolve(tree, "packages/dma/src")).href + "/";
      }
      const args = [
        ...opts.flags,
        "--import",
        pathToFileURL(resolve(tree, "scripts/bench-loader/register.mjs")).href,
        "--import",
        new URL("register.mjs", here).href,
        new URL("ab.mjs", here).pathname,
        "--child",
        file,
        opts.filter,
      ];
      const load = loadavg()[0].toFixed(1);
      const run = spawnSync(process.execPath, args, { cwd: tree, env, encoding: "utf8", maxBuffer: 1 << 28 });
      const last = run.stdout.trim().split("\n").pop() ?? "";
      if (run.status !== 0 || !last.startsWith("[")) throw new Error(`${tree}: run failed\n${run.stderr}`);
      for (const r of JSON.parse(last)) {
        const byTree = results.get(r.name) ?? new Map();
        results.set(r.name, byTree);
        byTree.set(tree, [...(byTree.get(tree) ?? []), r.median]);
        console.log(`round ${round} load ${load} ${tree}: ${r.name}: median ${r.median.toFixed(0)} ns, min ${r.min.toFixed(0)} ns, ${r.samples} samples`);
      }
    }
  }
  const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  for (const [name, byTree] of results) {
    console.log(`\n${name}`);
    const base = byTree.get(trees[0]) ?? [];
    for (const tree of trees) {
      const runs = byTree.get(tree) ?? [];
      const ratios = runs.map((m, i) => m / (base[i] ?? NaN));
      console.log(`  ${tree}: median of ${runs.length} run medians ${median(runs).toFixed(0)} ns; median per-round ratio to the first tree ×${median(ratios).toFixed(3)}`);
    }
  }
}
