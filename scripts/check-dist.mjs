#!/usr/bin/env node
// Run by every published package's `prepack` (in the package's directory): every file its package.json
// points at (exports, bin) must exist, so `pnpm pack` / `pnpm publish` fail loudly instead of shipping
// a tarball without dist/ (which is what an unbuilt clone used to produce, silently).
import { existsSync, readFileSync } from "node:fs";

const pkg = JSON.parse(readFileSync("package.json", "utf8"));
const targets = [];
const walk = (v) => {
  if (typeof v === "string") targets.push(v);
  else if (v !== null && typeof v === "object") for (const x of Object.values(v)) walk(x);
};
walk(pkg.exports);
walk(pkg.bin);
const missing = targets.filter((t) => !existsSync(t));
if (targets.length === 0 || missing.length > 0) {
  console.error(`${pkg.name}: refusing to pack: ${targets.length === 0 ? "no exports or bin" : `missing ${missing.join(", ")}`} (did the build run?)`);
  process.exit(1);
}
