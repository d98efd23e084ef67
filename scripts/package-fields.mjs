#!/usr/bin/env node
// The package.json fields every published workspace shares, checked (default) or written (--fix).
// Run from anywhere: `node scripts/package-fields.mjs [--fix]`. A new package gets them with --fix; its
// description and keywords are its own and must be written by hand (the check says so).
// Exit status: 0 all good (or fixed), 1 something is missing (listed one line each).
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, workspaces } from "./workspace.mjs";

/** `files` of a published package: built code and sources (for source maps), none of the test material. */
export const FILES = ["dist", "src/**/*.ts", "!**/*.tsbuildinfo", "!src/**/*.test.ts", "!src/**/*.bench.ts", "!src/**/test-*.ts", "!src/**/fixtures/**"];
/** `pnpm pack` and `pnpm publish` build first and refuse a package whose entry points are not there. */
export const PREPACK = "pnpm run build && node ../../scripts/check-dist.mjs";

const root = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));

/** What `pkg` (at `rel`) must hold; returns the problems, and rewrites `pkg` in place when fixing. */
export function packageProblems(pkg, rel, fix = false) {
  const problems = [];
  const want = (what, ok, apply) => {
    if (ok) return;
    if (fix && apply !== undefined) apply();
    else problems.push(`${rel}/package.json: ${what}`);
  };
  if (pkg.private === true) return problems;
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  want('"description" (one line: what the package models)', typeof pkg.description === "string" && pkg.description.length > 0);
  want('"keywords" (a few, for the registry search)', Array.isArray(pkg.keywords) && pkg.keywords.length > 0);
  want(`"license": "${root.license}"`, pkg.license === root.license, () => (pkg.license = root.license));
  want('"type": "module"', pkg.type === "module", () => (pkg.type = "module"));
  const repository = { type: "git", url: root.repository.url, directory: rel };
  want(`"repository": ${JSON.stringify(repository)}`, same(pkg.repository, repository), () => (pkg.repository = repository));
  want(`"engines": ${JSON.stringify(root.engines)}`, same(pkg.engines, root.engines), () => (pkg.engines = root.engines));
  want('"publishConfig": { "access": "public" }', pkg.publishConfig?.access === "public", () => (pkg.publishConfig = { ...pkg.publishConfig, access: "public" }));
  // Extra entries a package ships (scenario.schema.json, examples) are kept; the shared ones come first.
  const files = [...FILES.filter((f) => !f.startsWith("!")), ...(pkg.files ?? []).filter((f) => !FILES.includes(f)), ...FILES.filter((f) => f.startsWith("!"))];
  want(`"files": ${JSON.stringify(FILES)} (plus the package's own entries)`, same(pkg.files, files), () => (pkg.files = files));
  want(`"scripts.prepack": "${PREPACK}"`, pkg.scripts?.prepack === PREPACK, () => (pkg.scripts = { ...pkg.scripts, prepack: PREPACK }));
  want('"exports" with "./package.json": "./package.json"', pkg.exports?.["./package.json"] === "./package.json", () => (pkg.exports = { ...pkg.exports, "./package.json": "./package.json" }));
  return problems;
}

/** Writes back a package.json with the shared fields in the order a reader expects them. */
function ordered(pkg) {
  const order = ["name", "version", "private", "description", "keywords", "license", "repository", "type", "sideEffects", "engines", "bin", "exports", "files", "publishConfig", "scripts", "dependencies", "devDependencies"];
  const out = {};
  for (const k of order) if (k in pkg) out[k] = pkg[k];
  for (const k of Object.keys(pkg)) if (!(k in out)) out[k] = pkg[k];
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const fix = process.argv.includes("--fix");
  const problems = [];
  for (const w of workspaces()) {
    const before = JSON.stringify(w.pkg);
    problems.push(...packageProblems(w.pkg, w.rel, fix));
    if (fix && JSON.stringify(w.pkg) !== before) writeFileSync(join(w.dir, "package.json"), `${JSON.stringify(ordered(w.pkg), null, 2)}\n`);
  }
  for (const p of problems) console.error(p);
  if (problems.length > 0) {
    console.error(`${problems.length} problem(s); \`node scripts/package-fields.mjs --fix\` writes the shared fields, description and keywords are written by hand`);
    process.exit(1);
  }
}
