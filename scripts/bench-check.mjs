// pnpm bench:check — compares recorded benchmark figures with a fresh run.
//
// For every entry of bench/figures.json (project, benchmark file, and the recorded median of each case in
// ns), the benchmark file is run `--rounds` times (default 3) with `vitest bench --outputJson`. Per case it
// takes the median of the per-round medians as the fresh figure, and the spread of the per-round medians
// ((max - min) / median) as the noise this machine shows right now. A case is flagged as a regression when
// its fresh figure exceeds the recorded one by more than max(10 %, that noise, the noise recorded with the
// figure): a slowdown the machine's own run-to-run variation could explain is reported, not flagged.
//
// Benchmark files with "first:" and "after:" groups (no-cliff.bench.ts) are also checked within the run:
// an "after:" median more than 10 % above its "first:" median (per round, the median of the ratios) is a
// cliff — a configuration that ran before left the process slower.
//
//   pnpm bench:check                 check; exit 1 on a regression or a cliff
//   pnpm bench:check --record        run and write the fresh figures (and their noise) to bench/figures.json
//   pnpm bench:check --rounds 5      more rounds, steadier figures
//   pnpm bench:check --only dma      only the entries of one project
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const figuresPath = join(root, "bench", "figures.json");
const args = process.argv.slice(2);
const record = args.includes("--record");
const roundsArg = args.indexOf("--rounds");
const rounds = roundsArg >= 0 ? Number(args[roundsArg + 1]) : 3;
const onlyArg = args.indexOf("--only");
const only = onlyArg >= 0 ? args[onlyArg + 1] : undefined;
if (!Number.isInteger(rounds) || rounds < 1) {
  console.error("bench:check: --rounds takes a positive integer");
  process.exit(2);
}

const MIN_TOLERANCE = 0.1;
const CLIFF_TOLERANCE = 0.1;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const pct = (x) => `${x >= 0 ? "+" : ""}${(100 * x).toFixed(1)} %`;

/** One run of a benchmark file: case key ("group > name") → median in ns. */
function runOnce(project, file, dir, round) {
  const out = join(dir, `${project}-${round}.json`);
  const vitest = join(root, "node_modules", "vitest", "vitest.mjs");
  try {
    execFileSync(process.execPath, [vitest, "bench", "--run", "--project", project, file, "--outputJson", out], { cwd: root, stdio: "pipe" });
  } catch (e) {
    process.stderr.write(e.stderr ?? "");
    throw e;
  }
  const json = JSON.parse(readFileSync(out, "utf8"));
  const cases = new Map();
  for (const f of json.files) {
    for (const g of f.groups) {
      const group = g.fullName.split(" > ").slice(1).join(" > ");
      for (const b of g.benchmarks) cases.set(`${group} > ${b.name}`, b.median * 1e6);
    }
  }
  return cases;
}

const recorded = JSON.parse(readFileSync(figuresPath, "utf8"));
const dir = mkdtempSync(join(tmpdir(), "bench-check-"));
let failed = false;
try {
  for (const entry of recorded.entries) {
    if (only !== undefined && entry.project !== only) continue;
    console.log(`\n${entry.project} ${entry.file} (${rounds} rounds)`);
    const runs = [];
    for (let r = 0; r < rounds; r++) runs.push(runOnce(entry.project, entry.file, dir, r));
    const fresh = {};
    for (const key of runs[0].keys()) {
      const xs = runs.map((m) => m.get(key)).filter((x) => x !== undefined);
      const m = median(xs);
      fresh[key] = { ns: Number(m.toPrecision(4)), noise: Number(((Math.max(...xs) - Math.min(...xs)) / m).toFixed(3)) };
    }
    for (const [key, f] of Object.entries(fresh)) {
      const old = entry.figures?.[key];
      if (old === undefined) {
        console.log(`  new   ${key}: ${f.ns} ns (noise ${pct(f.noise)})`);
        continue;
      }
      const change = f.ns / old.ns - 1;
      const tolerance = Math.max(MIN_TOLERANCE, f.noise, old.noise ?? 0);
      const bad = change > tolerance;
      if (bad) failed = true;
      console.log(`  ${bad ? "SLOWER" : "ok    "} ${key}: ${old.ns} → ${f.ns} ns (${pct(change)}; tolerance ${pct(tolerance)})`);
    }
    // Cliffs: "after: X" against "first: X", round by round.
    for (const key of Object.keys(fresh)) {
      if (!key.startsWith("first: ")) continue;
      const afterKey = `after: ${key.slice("first: ".length)}`;
      if (fresh[afterKey] === undefined) continue;
      const ratio = median(runs.map((m) => (m.get(afterKey) ?? NaN) / (m.get(key) ?? NaN)));
      const bad = !(ratio <= 1 + CLIFF_TOLERANCE);
      if (bad) failed = true;
      console.log(`  ${bad ? "CLIFF " : "ok    "} ${key.slice("first: ".length)}: after / first = ${ratio.toFixed(3)}`);
    }
    if (record) entry.figures = fresh;
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
if (record) {
  recorded.recorded = { date: new Date().toISOString().slice(0, 10), rounds, node: process.version };
  writeFileSync(figuresPath, `${JSON.stringify(recorded, null, 2)}\n`);
  console.log(`\nrecorded in ${figuresPath}`);
}
if (failed && !record) {
  console.log("\nbench:check: regressions beyond the measured noise (or a cliff), see above");
  process.exit(1);
}
