import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { publishedWorkspaces, ROOT, workspaces } from "./workspace.js";

const published = publishedWorkspaces();
const publishedNames = new Set(published.map((w) => w.pkg.name));

describe("package fields", () => {
  it("finds the libraries, the command and its page to publish, and no private workspace among them", () => {
    expect(publishedNames.has("@dmasim/dma")).toBe(true);
    expect(publishedNames.has("dmasim")).toBe(true);
    // The explorer page is published because the command serves it (`dmasim explore`); the other apps are examples.
    expect(publishedNames.has("@dmasim/explorer")).toBe(true);
    const publishedApps = new Set(["dmasim", "@dmasim/explorer"]);
    for (const w of workspaces()) if (!w.rel.startsWith("packages/") && !publishedApps.has(w.pkg.name)) expect(w.pkg.private, w.rel).toBe(true);
  });

  it("every published package has the shared fields (scripts/package-fields.mjs)", () => {
    const r = spawnSync(process.execPath, [join(ROOT, "scripts/package-fields.mjs")], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it("a published package depends only on published workspace packages", () => {
    for (const w of published) {
      for (const [dep, range] of Object.entries(w.pkg.dependencies ?? {})) {
        if (!dep.startsWith("@dmasim/") && dep !== "dmasim") continue;
        expect(publishedNames.has(dep), `${w.pkg.name} -> ${dep}`).toBe(true);
        expect(range, `${w.pkg.name} -> ${dep}`).toBe("workspace:*");
      }
    }
  });
});

describe("changesets", () => {
  const config = JSON.parse(readFileSync(join(ROOT, ".changeset/config.json"), "utf8")) as {
    fixed: string[][];
    access: string;
    privatePackages?: { version?: boolean; tag?: boolean };
  };
  const matches = (name: string, pattern: string): boolean => (pattern.endsWith("/*") ? name.startsWith(pattern.slice(0, -1)) : name === pattern);

  it("versions the published packages together, never a private workspace, and publishes them publicly", () => {
    expect(config.access).toBe("public");
    expect(config.privatePackages).toEqual({ version: false, tag: false });
    expect(config.fixed).toHaveLength(1);
    const group = config.fixed[0] ?? [];
    for (const name of publishedNames) expect(group.some((p) => matches(name, p)), name).toBe(true);
  });

  it("each changeset names one published package (changelogs only say what changed in that package)", () => {
    const dir = join(ROOT, ".changeset");
    for (const file of readdirSync(dir).filter((f) => f.endsWith(".md") && f !== "README.md")) {
      const text = readFileSync(join(dir, file), "utf8");
      const front = /^---\n([\s\S]*?)\n---/.exec(text)?.[1] ?? "";
      const names = [...front.matchAll(/^["']?([^"':\s]+)["']?\s*:\s*(major|minor|patch)\s*$/gm)].map((m) => m[1]);
      expect(names, `${file}: one package per changeset (.changeset/README.md)`).toHaveLength(1);
      expect(publishedNames.has(names[0] ?? ""), `${file} names ${String(names[0])}, not a published package`).toBe(true);
    }
  });
});

describe("prepack", () => {
  it("refuses to pack a package whose entry points were not built, naming them", () => {
    const dir = mkdtempSync(join(tmpdir(), "dmasim-unbuilt-"));
    try {
      writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "@dmasim/unbuilt", exports: { ".": { types: "./dist/index.d.ts", import: "./dist/index.js" } } }));
      const r = spawnSync(process.execPath, [join(ROOT, "scripts/check-dist.mjs")], { cwd: dir, encoding: "utf8" });
      expect(r.status).toBe(1);
      expect(r.stderr).toContain("@dmasim/unbuilt: refusing to pack: missing ./dist/index.d.ts, ./dist/index.js");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
