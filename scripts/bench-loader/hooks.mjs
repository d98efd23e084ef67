// Node module hooks for the benchmarks. Vite's module runner, which vitest uses by default, rewrites
// every imported name into a property read through a getter on a namespace object. That is harmless for
// tests, but it more than doubled the measured time of call-heavy paths (a dma_map_sg of 256 entries
// crosses modules thousands of times). The benchmarks therefore run with the module runner off and these
// hooks in its place: `@dmasim/<name>` resolves to the package's src/index.ts (a subpath export
// `@dmasim/<name>/<sub>` to src/<sub>.ts), a `./x.js` import inside
// a package resolves to `./x.ts`, and .ts files are stripped of their types by the TypeScript compiler.
// The code that runs is then what Node runs for a user of the built packages.
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const root = new URL("../../", import.meta.url);
const PACKAGE = /^@dmasim\/([a-z0-9-]+)(?:\/([a-z-]+))?$/;

export function resolve(specifier, context, nextResolve) {
  const pkg = PACKAGE.exec(specifier);
  if (pkg !== null) {
    const entry = new URL(`packages/${pkg[1]}/src/${pkg[2] ?? "index"}.ts`, root);
    if (existsSync(entry)) return { url: entry.href, format: "module", shortCircuit: true };
  }
  const parent = context.parentURL;
  if (parent !== undefined && parent.endsWith(".ts") && specifier.startsWith(".") && specifier.endsWith(".js")) {
    const candidate = new URL(`${specifier.slice(0, -3)}.ts`, parent);
    if (existsSync(candidate)) return { url: candidate.href, format: "module", shortCircuit: true };
  }
  return nextResolve(specifier, context);
}

const compilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  verbatimModuleSyntax: true,
  sourceMap: false,
  inlineSourceMap: true,
  inlineSources: true,
};

export function load(url, context, nextLoad) {
  if (!url.startsWith("file:") || !url.endsWith(".ts")) return nextLoad(url, context);
  const file = fileURLToPath(url);
  const out = ts.transpileModule(readFileSync(file, "utf8"), { compilerOptions, fileName: file });
  return { format: "module", source: out.outputText, shortCircuit: true };
}
