#!/usr/bin/env node
// `pnpm soak`: the soak of tests/soak with 10 000 sequences (or SOAK_SEQUENCES), seed SOAK_SEED.
// Runs the vitest project `soak`, which writes its result to a report file, and prints one line:
// `N sequences, M commands, K violations`, then the first violations with what reproduces them.
// Exits non-zero on any violation.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "dmasim-soak-"));
const report = join(dir, "soak.json");
const env = { ...process.env, SOAK_SEQUENCES: process.env.SOAK_SEQUENCES ?? "10000", SOAK_REPORT: report };
const run = spawnSync("pnpm", ["exec", "vitest", "run", "--project", "soak", "--reporter=dot", "src/soak.test.ts"], { stdio: ["ignore", "ignore", "inherit"], env });
if (!existsSync(report)) {
  console.error(`soak: no report (vitest exited with ${run.status ?? "a signal"})`);
  process.exit(1);
}
const result = JSON.parse(readFileSync(report, "utf8"));
rmSync(dir, { recursive: true, force: true });
console.log(result.summary);
for (const [k, v] of Object.entries(result.outcomes)) console.log(`  ${k}: ${v}`);
for (const f of result.failures) console.log(`\nsequence ${f.sequence}: ${f.error}\n  config: ${f.config}\n  commands: ${f.commands}`);
process.exit(result.violations === 0 && run.status === 0 ? 0 : 1);
