// The workspace as the release tooling sees it, discovered from the directories (never a fixed list):
// every directory under packages/, apps/ and tests/ with a package.json. A workspace is *published*
// when its package.json is not `"private": true` — the libraries in packages/ and the `dmasim` command.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(fileURLToPath(new URL("..", import.meta.url)));

/** @returns {{ dir: string, rel: string, pkg: Record<string, any> }[]} every workspace, sorted by path. */
export function workspaces(root = ROOT) {
  return ["packages", "apps", "tests"].flatMap((top) => {
    const base = join(root, top);
    if (!existsSync(base)) return [];
    return readdirSync(base, { withFileTypes: true })
      .filter((d) => d.isDirectory() && existsSync(join(base, d.name, "package.json")))
      .map((d) => d.name)
      .sort()
      .map((name) => {
        const dir = join(base, name);
        return { dir, rel: `${top}/${name}`, pkg: JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) };
      });
  });
}

/** The workspaces that are published to the registry. */
export function publishedWorkspaces(root = ROOT) {
  return workspaces(root).filter((w) => w.pkg.private !== true);
}
