// The workspace as the release checks see it, discovered from the directories (packages/, apps/,
// tests/), never from a fixed list: a package added tomorrow is checked tomorrow. Mirrors
// scripts/workspace.mjs, which the release scripts use.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(fileURLToPath(new URL("../../..", import.meta.url)));

export interface Manifest {
  readonly name: string;
  readonly version: string;
  readonly private?: boolean;
  readonly exports?: Readonly<Record<string, unknown>>;
  readonly bin?: Readonly<Record<string, string>>;
  readonly dependencies?: Readonly<Record<string, string>>;
  readonly publishConfig?: { readonly access?: string };
}

export interface Workspace {
  readonly dir: string;
  /** The path from the repository root, `packages/dma`. */
  readonly rel: string;
  readonly pkg: Manifest;
}

export function workspaces(root: string = ROOT): Workspace[] {
  return ["packages", "apps", "tests"].flatMap((top) => {
    const base = join(root, top);
    if (!existsSync(base)) return [];
    return readdirSync(base, { withFileTypes: true })
      .filter((d) => d.isDirectory() && existsSync(join(base, d.name, "package.json")))
      .map((d) => d.name)
      .sort()
      .map((name) => ({ dir: join(base, name), rel: `${top}/${name}`, pkg: JSON.parse(readFileSync(join(base, name, "package.json"), "utf8")) as Manifest }));
  });
}

/** The workspaces published to the registry: every one that is not `"private": true`. */
export function publishedWorkspaces(root: string = ROOT): Workspace[] {
  return workspaces(root).filter((w) => w.pkg.private !== true);
}

/** Every file a manifest points at (exports targets, bins), as paths relative to the package. */
export function entryFiles(pkg: Manifest): string[] {
  const out: string[] = [];
  const walk = (v: unknown): void => {
    if (typeof v === "string") out.push(v.replace(/^\.\//, ""));
    else if (v !== null && typeof v === "object") for (const x of Object.values(v)) walk(x);
  };
  walk(pkg.exports);
  walk(pkg.bin);
  return out;
}
