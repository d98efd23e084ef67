import { readdirSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const root = fileURLToPath(new URL(".", import.meta.url));

// Every package, app and test workspace (tests/*, e.g. the soak) is a vitest project. Imports of `@dmasim/<name>` resolve to the package's
// source, so tests never need a prior build.
const dirs = ["packages", "apps", "tests"].flatMap((top) =>
  existsSync(`${root}${top}`)
    ? readdirSync(`${root}${top}`, { withFileTypes: true })
        .filter((d) => d.isDirectory() && existsSync(`${root}${top}/${d.name}/package.json`))
        .map((d) => ({ top, name: d.name }))
    : [],
);

// `@dmasim/<name>` resolves to the package's src/index.ts and a subpath export (`@dmasim/dma/internal`,
// `@dmasim/pcie-p2p/testing`) to src/<subpath>.ts. Anchored patterns, so `@dmasim/dma` never swallows
// `@dmasim/dma/internal`.
const packageAliases = dirs
  .filter((d) => d.top === "packages")
  .flatMap((d) => [
    { find: new RegExp(`^@dmasim/${d.name}/([a-z-]+)$`), replacement: `${root}packages/${d.name}/src/$1.ts` },
    { find: new RegExp(`^@dmasim/${d.name}$`), replacement: `${root}packages/${d.name}/src/index.ts` },
  ]);

// The projects: every workspace above, and the examples/ workspace (one program per package), which is a
// single directory at the top rather than a directory of workspaces.
const projectRoots = [
  ...dirs.map((d) => ({ name: d.name, root: `${root}${d.top}/${d.name}` })),
  ...(existsSync(`${root}examples/package.json`) ? [{ name: "examples", root: `${root}examples` }] : []),
];

export default defineConfig(({ mode }) => {
  // `vitest bench` runs the sources as native ES modules (scripts/bench-loader/hooks.mjs says why):
  // Vite's module runner would add a getter call to every cross-module reference being measured.
  const bench = mode === "benchmark";
  return {
    resolve: { alias: packageAliases },
    test: {
      // Property tests and whole-scenario runs take seconds; on a busy 2-core machine several times
      // vitest's 5 s default. A timeout here is a hang guard, not a speed check (speed has benchmarks).
      testTimeout: 60_000,
      ...(bench
        ? {
            experimental: { viteModuleRunner: false, nodeLoader: false },
            execArgv: ["--import", `${root}scripts/bench-loader/register.mjs`],
            // One benchmark file at a time: on a small machine two at once measure each other.
            fileParallelism: false,
          }
        : {}),
      projects: projectRoots.map((d) => ({
        extends: true,
        test: {
          name: d.name,
          root: d.root,
          include: ["src/**/*.test.ts"],
          benchmark: { include: ["src/**/*.bench.ts"] },
        },
      })),
    },
  };
});
