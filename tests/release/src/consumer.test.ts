// The round trip a user makes: every published package versioned and published with changesets to a
// real local registry, then installed with npm in a fresh directory outside the workspace, the README's
// "Hello, DMA" run as JavaScript and type-checked with `tsc --strict --module nodenext`, every package
// imported and type-checked, and `npx dmasim` run from the registry.
//
// It works in a temporary clone of the committed HEAD (`changeset version` and the tags of
// `changeset publish` never touch the work tree) and stops the registry whatever happens.
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRegistry } from "./registry.js";
import type { Registry } from "./registry.js";
import { run, said } from "./run.js";
import { publishedWorkspaces, ROOT, workspaces } from "./workspace.js";

const tmp = mkdtempSync(join(tmpdir(), "dmasim-release-"));
const clone = join(tmp, "repo");
const consumer = join(tmp, "consumer");
let registry: Registry | undefined;
let env: NodeJS.ProcessEnv = process.env;
let version = "";
/** Versions by workspace path, in the clone before `changeset version`, and in the work tree at the start. */
const versionsOf = (root?: string): Map<string, string> => new Map(workspaces(root).map((w) => [w.rel, w.pkg.version]));
const workTreeBefore = versionsOf();
let cloneBefore = new Map<string, string>();
let pendingChangesets = 0;
let published: string[] = [];

/** The environment of every command here: the registry's npmrc, a private npm cache, nothing of the caller's npm settings. */
function commandEnv(npmrc: string, url: string): NodeJS.ProcessEnv {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(npm|pnpm)_/i.test(k)));
  return {
    ...clean,
    npm_config_userconfig: npmrc,
    npm_config_registry: url,
    npm_config_cache: join(tmp, "npm-cache"),
    npm_config_update_notifier: "false",
    npm_config_fund: "false",
    npm_config_audit: "false",
    TURBO_TELEMETRY_DISABLED: "1",
    DO_NOT_TRACK: "1",
    GIT_AUTHOR_NAME: "release check",
    GIT_AUTHOR_EMAIL: "release-check@localhost",
    GIT_COMMITTER_NAME: "release check",
    GIT_COMMITTER_EMAIL: "release-check@localhost",
  };
}

async function must(cmd: string, args: readonly string[], cwd: string): Promise<string> {
  const r = await run(cmd, args, cwd, env);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} (in ${cwd}) failed: ${said(r)}`);
  return r.stdout;
}

/** The first ```ts block after `heading` in a README. */
export function readmeBlock(readme: string, heading: string): string {
  const at = readme.indexOf(`\n${heading}\n`);
  const block = at < 0 ? undefined : /```ts\n([\s\S]*?)```/.exec(readme.slice(at));
  if (block?.[1] === undefined) throw new Error(`no ts block under ${heading}`);
  return block[1];
}

beforeAll(async () => {
  registry = await startRegistry(tmp);
  env = commandEnv(registry.npmrc, registry.url);
  await must("git", ["clone", "--quiet", "--no-hardlinks", ROOT, clone], tmp);
  // pnpm reads the workspace's .npmrc, npm the user config: both point at the local registry.
  copyFileSync(registry.npmrc, join(clone, ".npmrc"));
  await must("pnpm", ["install", "--frozen-lockfile", "--prefer-offline", "--reporter=silent"], clone);
  // The work tree's turbo cache (a linked worktree's is the main worktree's): a build of the same sources
  // is restored from it rather than redone.
  const common = (await must("git", ["rev-parse", "--path-format=absolute", "--git-common-dir"], ROOT)).trim();
  await must("pnpm", ["exec", "turbo", "run", "build", "--output-logs=errors-only", `--cache-dir=${join(dirname(common), ".turbo/cache")}`], clone);
  cloneBefore = versionsOf(clone);
  pendingChangesets = readdirSync(join(clone, ".changeset")).filter((f) => f.endsWith(".md") && f !== "README.md").length;
  await must("pnpm", ["exec", "changeset", "version"], clone);
  await must("pnpm", ["exec", "changeset", "publish"], clone);
  const names = publishedWorkspaces(clone).map((w) => w.pkg.name);
  published = names;
  version = publishedWorkspaces(clone)[0]?.pkg.version ?? "";
  mkdirSync(consumer);
  writeFileSync(join(consumer, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  await must("npm", ["install", "--no-package-lock", ...names.map((n) => `${n}@${version}`), "@types/node@20"], consumer);
}, 1_500_000);

afterAll(async () => {
  await registry?.stop();
  rmSync(tmp, { recursive: true, force: true });
}, 60_000);

describe("publish with changesets, install from the registry", () => {
  it("versions every published package to one version (a new one when changesets were pending) and leaves private workspaces alone", () => {
    expect(version).toMatch(/^\d+\.\d+\.\d+$/);
    for (const w of workspaces(clone)) {
      const before = cloneBefore.get(w.rel);
      if (w.pkg.private === true) expect(w.pkg.version, w.rel).toBe(before);
      else {
        expect(w.pkg.version, w.rel).toBe(version);
        if (pendingChangesets > 0) expect(w.pkg.version, w.rel).not.toBe(before);
      }
    }
    expect(published).toContain("@dmasim/dma");
    expect(published).toContain("dmasim");
  });

  it("published every package to the registry (and only from the clone: the work tree keeps its versions)", async () => {
    for (const name of published) {
      const r = await run("npm", ["view", `${name}@${version}`, "version"], consumer, env);
      expect(r.stdout.trim(), `${name}: ${said(r)}`).toBe(version);
    }
    expect(versionsOf()).toEqual(workTreeBefore);
  });

  it("runs the README's Hello, DMA as JavaScript against the installed packages", async () => {
    const hello = readmeBlock(readFileSync(join(clone, "README.md"), "utf8"), "## Hello, DMA");
    writeFileSync(join(consumer, "hello.mjs"), hello);
    const r = await run(process.execPath, ["hello.mjs"], consumer, env);
    expect(r.status, said(r)).toBe(0);
    expect(r.stderr).toBe("");
    // kernel.costs(): one dma_iova_link of 16 pages wrote 16 PTEs, synced the IOTLB once, and the
    // device read the 13 bytes of "hello, device" from memory.
    expect(r.stdout).toContain("DmaIovaLinks: 1,");
    expect(r.stdout).toContain("PteWrites: 16,");
    expect(r.stdout).toContain("IotlbSyncMap: 1,");
    expect(r.stdout).toContain("BytesToMemory: 13,");
  });

  it("imports every published entry point, and type-checks them and Hello, DMA with tsc --strict --module nodenext", async () => {
    const libs = publishedWorkspaces(clone).flatMap((w) =>
      Object.entries(w.pkg.exports ?? {})
        .filter(([sub, target]) => typeof target === "object" && sub !== "./package.json")
        .map(([sub]) => (sub === "." ? w.pkg.name : `${w.pkg.name}/${sub.slice(2)}`)),
    );
    expect(libs).toContain("@dmasim/dma");
    const body = libs.map((l, i) => `import * as m${i} from "${l}";\nif (Object.keys(m${i}).length === 0) throw new Error("${l} exports nothing");`).join("\n");
    writeFileSync(join(consumer, "all.ts"), `${body}\nconsole.log("imported ${libs.length}");\n`);
    writeFileSync(join(consumer, "all.mjs"), `${body}\nconsole.log("imported ${libs.length}");\n`);
    const ran = await run(process.execPath, ["all.mjs"], consumer, env);
    expect(ran.stdout.trim(), said(ran)).toBe(`imported ${libs.length}`);
    writeFileSync(join(consumer, "hello.ts"), readmeBlock(readFileSync(join(clone, "README.md"), "utf8"), "## Hello, DMA"));
    // The declarations as published, strictly: no skipLibCheck.
    const tsc = join(ROOT, "node_modules/typescript/bin/tsc");
    const r = await run(process.execPath, [tsc, "--strict", "--module", "nodenext", "--target", "es2022", "--types", "node", "--noEmit", "hello.ts", "all.ts"], consumer, env);
    expect(r.status, said(r)).toBe(0);
  });

  it("npx dmasim: --version and demo from the registry", async () => {
    const fresh = join(tmp, "npx");
    mkdirSync(fresh);
    const v = await run("npx", ["--yes", `dmasim@${version}`, "--version"], fresh, env);
    expect(v.stdout.trim(), said(v)).toBe(version);
    const demo = await run("npx", ["--yes", `dmasim@${version}`, "demo", "--json"], fresh, env);
    expect(demo.status, said(demo)).toBe(0);
    const out = JSON.parse(demo.stdout) as { format: string; version: number; sections: { ok: boolean }[] };
    expect(out.format).toBe("dmasim-cli");
    expect(out.sections.length).toBeGreaterThan(0);
    expect(out.sections.every((s) => s.ok)).toBe(true);
  });
});
