#!/usr/bin/env node
// `pnpm test`: every check the project has. Build, typecheck and lint every package (turbo, in
// dependency order), build the API reference and check that every exported name has a doc comment
// (scripts/docs.mjs: docs/api/, not committed),
// then run every vitest project once, and close with one plain line
// `N passed, N failed` read from vitest's JSON report. Exits non-zero when anything failed.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";

const env = { ...process.env, TURBO_TELEMETRY_DISABLED: "1", DO_NOT_TRACK: "1" };
const run = (cmd, args) => spawnSync(cmd, args, { stdio: "inherit", env }).status ?? 1;

const checks = run("pnpm", ["exec", "turbo", "run", "build", "typecheck", "lint", "--output-logs=errors-only"]);
if (checks !== 0) console.error("build, typecheck or lint failed (see above)");
const docs = run("node", ["scripts/docs.mjs"]);
if (docs !== 0) console.error("API reference: an exported name without a doc comment (see above)");

const report = ".vitest-report.json";
rmSync(report, { force: true });
const tests = run("pnpm", ["exec", "vitest", "run", "--reporter=default", "--reporter=json", `--outputFile=${report}`]);

let passed = 0;
let failed = 0;
if (existsSync(report)) {
  const json = JSON.parse(readFileSync(report, "utf8"));
  passed = json.numPassedTests ?? 0;
  failed = (json.numFailedTests ?? 0) + (json.numRuntimeErrorTestSuites ?? 0);
  if (json.success === false && failed === 0) failed = 1;
} else {
  failed = 1;
}
if (checks !== 0) failed += 1;
if (docs !== 0) failed += 1;
console.log(`${passed} passed, ${failed} failed`);
process.exit(checks === 0 && docs === 0 && tests === 0 && failed === 0 && passed > 0 ? 0 : 1);
