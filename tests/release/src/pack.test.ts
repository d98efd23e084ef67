// `pnpm pack` of every published package, as the registry would receive it: the tarball builds first
// (prepack), carries every file the manifest points at and no build info or test material, and passes
// `publint --strict` and `attw --profile esm-only` (the tarball is what attw's --pack would make).
// Then, on that build, the checked-in API reports (<package>/api/*.api.md) must match the declarations,
// so a change to a public signature cannot land without a change to a report that a reviewer sees.
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { publint } from "publint";
import { formatMessage } from "publint/utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mapLimit, run, said } from "./run.js";
import type { Ran } from "./run.js";
import { entryFiles, publishedWorkspaces, ROOT } from "./workspace.js";

const published = publishedWorkspaces();
const dest = mkdtempSync(join(tmpdir(), "dmasim-pack-"));
const packed = new Map<string, { ran: Ran; tarball: string | undefined }>();
const attw = join(ROOT, "tests/release/node_modules/.bin/attw");

beforeAll(async () => {
  // One build first (a no-op after `pnpm test`'s, from turbo's cache), so the packs' prepack builds find
  // nothing to do and two of them never write the same dist/ at once.
  const built = await run("pnpm", ["exec", "turbo", "run", "build", "--output-logs=errors-only"], ROOT, { ...process.env, TURBO_TELEMETRY_DISABLED: "1", DO_NOT_TRACK: "1" });
  if (built.status !== 0) throw new Error(`build failed: ${said(built)}`);
  await mapLimit(published, 2, async (w) => {
    const ran = await run("pnpm", ["pack", "--pack-destination", dest], w.dir);
    // pnpm's name for it: the scope's "@" dropped, "/" as "-" (two packs run at once, so not "the new file").
    const tarball = `${w.pkg.name.replace(/^@/, "").replace("/", "-")}-${w.pkg.version}.tgz`;
    packed.set(w.pkg.name, { ran, tarball: ran.status === 0 && readdirSync(dest).includes(tarball) ? join(dest, tarball) : undefined });
  });
}, 600_000);

afterAll(() => {
  rmSync(dest, { recursive: true, force: true });
});

function tarballOf(name: string): string {
  const p = packed.get(name);
  if (p?.tarball === undefined) throw new Error(`${name}: pnpm pack made no tarball: ${p === undefined ? "" : said(p.ran)}`);
  return p.tarball;
}

describe.each(published.map((w) => [w.pkg.name, w] as const))("%s", (name, w) => {
  it("packs a tarball with every entry point and no build info or test material", async () => {
    const list = await run("tar", ["tzf", tarballOf(name)], dest);
    expect(list.status, said(list)).toBe(0);
    const files = list.stdout.split("\n").filter((f) => f !== "").map((f) => f.replace(/^package\//, ""));
    for (const entry of entryFiles(w.pkg)) expect(files, `${name} ships ${entry}`).toContain(entry);
    expect(files.filter((f) => f.startsWith("dist/")).length).toBeGreaterThan(0);
    expect(files.filter((f) => /\.tsbuildinfo$|\.test\.ts$|\.bench\.ts$|(^|\/)test-[^/]*\.ts$|(^|\/)fixtures\//.test(f))).toEqual([]);
    const manifest = JSON.parse(readFileSync(join(w.dir, "package.json"), "utf8")) as { version: string };
    expect(files).toContain("package.json");
    expect(manifest.version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("passes publint --strict", async () => {
    const tarball = readFileSync(tarballOf(name));
    const { messages, pkg } = await publint({ pack: { tarball: tarball.buffer.slice(tarball.byteOffset, tarball.byteOffset + tarball.byteLength) }, strict: true, level: "suggestion" });
    expect(messages.map((m) => `${m.type}: ${formatMessage(m, pkg) ?? m.code}`)).toEqual([]);
  });

  it("passes attw --profile esm-only", async () => {
    const r = await run(attw, [tarballOf(name), "--profile", "esm-only", "--format", "ascii", "--no-color"], dest);
    expect(r.status, said(r)).toBe(0);
  });
});

it("every published entry's API report matches the build (pnpm api:update rewrites them)", async () => {
  expect([...packed.values()].every((p) => p.ran.status === 0)).toBe(true);
  const r = await run(process.execPath, [join(ROOT, "scripts/api-report.mjs")], ROOT);
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
});

it("every package a published package's built code or declarations import is one of its dependencies", () => {
  // npm hoisting would hide a missing declaration in the consumer test (another package brings it along);
  // here each package stands alone.
  const specifier = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["']([^"'./][^"']*)["']/g;
  for (const w of published) {
    const declared = new Set(Object.keys(w.pkg.dependencies ?? {}));
    const dist = join(w.dir, "dist");
    const files = readdirSync(dist, { recursive: true, encoding: "utf8" }).filter((f) => /\.(js|d\.ts)$/.test(f));
    const missing = new Set<string>();
    for (const f of files) {
      for (const m of readFileSync(join(dist, f), "utf8").matchAll(specifier)) {
        const spec = m[1] ?? "";
        if (spec.startsWith("node:")) continue;
        const name = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : (spec.split("/")[0] ?? spec);
        if (name !== w.pkg.name && !declared.has(name)) missing.add(`${name} (${f})`);
      }
    }
    expect([...missing], `${w.pkg.name} imports packages it does not depend on`).toEqual([]);
  }
});
