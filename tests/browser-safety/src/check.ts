// What a browser page may bundle of the model packages: no Node built-in module (node:fs, path, ...), no
// Node global (process, Buffer, require, __dirname, ...), no third-party module outside an allow-list,
// and no app. The check walks each package's import graph from its public entry points (the `exports`
// of its package.json, as src/<subpath>.ts), over the TypeScript sources.
import { readFileSync, existsSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";

/** The packages the explorer page runs in the browser (the model and its scenario runner). */
export const MODEL_PACKAGES = ["trace", "memory", "iommu", "pcie-p2p", "dma", "scatterlist", "bio", "nvme", "scenario", "hmm-odp", "rdma", "dmabuf"] as const;

/** Third-party modules known to run in a browser. */
export const BROWSER_SAFE_DEPENDENCIES: ReadonlySet<string> = new Set(["zod"]);

/** Globals only Node has. */
const NODE_GLOBALS: ReadonlySet<string> = new Set(["process", "Buffer", "require", "module", "__dirname", "__filename", "global", "setImmediate", "clearImmediate"]);

/** A first line that marks a file as Node-only: allowed to use Node, but then no entry point may reach it. */
export const NODE_ONLY_MARKER = "// node-only";

const NODE_BUILTINS: ReadonlySet<string> = new Set(builtinModules);

/** One finding: the file, and what in it a browser cannot run. */
export interface Violation {
  readonly file: string;
  readonly problem: string;
}

/** Problems of one source file's text (imports and Node globals), ignoring where it sits in a graph. */
export function checkSource(file: string, text: string, modelPackages: readonly string[] = MODEL_PACKAGES): Violation[] {
  const out: Violation[] = [];
  for (const spec of importsOf(text)) {
    const problem = importProblem(spec, modelPackages);
    if (problem !== undefined) out.push({ file, problem });
  }
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const declared = new Set<string>();
  const collect = (n: ts.Node): void => {
    if ((ts.isVariableDeclaration(n) || ts.isParameter(n) || ts.isFunctionDeclaration(n) || ts.isClassDeclaration(n) || ts.isImportSpecifier(n) || ts.isImportClause(n) || ts.isNamespaceImport(n)) && n.name !== undefined && ts.isIdentifier(n.name)) {
      declared.add(n.name.text);
    }
    ts.forEachChild(n, collect);
  };
  collect(sf);
  const visit = (n: ts.Node): void => {
    if (ts.isIdentifier(n) && NODE_GLOBALS.has(n.text) && !declared.has(n.text) && usedAsValue(n)) {
      const { line } = sf.getLineAndCharacterOfPosition(n.getStart(sf));
      out.push({ file, problem: `uses the Node global ${n.text} (line ${line + 1})` });
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

/** Whether an identifier is read as a value (`process.env`, `require(...)`, `typeof Buffer`), not a name or a type. */
function usedAsValue(n: ts.Identifier): boolean {
  const p = n.parent;
  if ((ts.isPropertyAccessExpression(p) || ts.isElementAccessExpression(p) || ts.isCallExpression(p) || ts.isNewExpression(p)) && p.expression === n) return true;
  if (ts.isCallExpression(p) && p.arguments.includes(n)) return true;
  return ts.isTypeOfExpression(p) || ts.isBinaryExpression(p) || ts.isReturnStatement(p);
}

/** Every module specifier of a file: static imports and re-exports, dynamic import() and require(). */
function importsOf(text: string): string[] {
  return ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName);
}

/** Why a browser cannot load `spec`, or undefined when it can. */
function importProblem(spec: string, modelPackages: readonly string[]): string | undefined {
  if (spec.startsWith(".")) return undefined;
  if (spec.startsWith("node:") || NODE_BUILTINS.has(spec.split("/")[0] ?? spec)) return `imports the Node module ${spec}`;
  const m = /^@dmasim\/([a-z0-9-]+)/.exec(spec);
  if (m !== null) return modelPackages.includes(m[1] ?? "") ? undefined : `imports ${spec}, which is not a model package`;
  const name = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : (spec.split("/")[0] ?? spec);
  return BROWSER_SAFE_DEPENDENCIES.has(name) ? undefined : `imports ${spec}, a third-party module not known to run in a browser`;
}

/** The TypeScript file a relative import names (`./x.js` is `./x.ts`, a directory its index.ts). */
function resolveRelative(from: string, spec: string): string | undefined {
  const base = resolve(dirname(from), spec);
  for (const c of [base.replace(/\.js$/, ".ts"), `${base}.ts`, join(base, "index.ts")]) if (existsSync(c)) return c;
  return undefined;
}

/** A package's entry points: `exports` keys with a TypeScript source (`.` is src/index.ts, `./x` src/x.ts). */
export function entryPoints(pkgDir: string): string[] {
  const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")) as { exports?: Record<string, unknown> };
  return Object.keys(pkg.exports ?? {})
    .map((k) => join(pkgDir, "src", k === "." ? "index.ts" : `${k.slice(2)}.ts`))
    .filter((f) => existsSync(f));
}

/**
 * Walks the import graph of every entry point of the package in `pkgDir` and reports what a browser
 * cannot run. A file marked NODE_ONLY_MARKER is reported when an entry point reaches it.
 */
export function checkPackage(pkgDir: string, modelPackages: readonly string[] = MODEL_PACKAGES): { files: number; violations: Violation[] } {
  const seen = new Set<string>();
  const violations: Violation[] = [];
  const queue = entryPoints(pkgDir);
  while (queue.length > 0) {
    const file = queue.pop() ?? "";
    if (seen.has(file)) continue;
    seen.add(file);
    const text = readFileSync(file, "utf8");
    const rel = relative(pkgDir, file);
    if (text.startsWith(NODE_ONLY_MARKER)) {
      violations.push({ file: rel, problem: "is marked Node-only but an entry point imports it" });
      continue;
    }
    violations.push(...checkSource(rel, text, modelPackages));
    for (const spec of importsOf(text)) {
      if (!spec.startsWith(".")) continue;
      const target = resolveRelative(file, spec);
      if (target === undefined) violations.push({ file: rel, problem: `imports ${spec}, which does not resolve to a source file` });
      else queue.push(target);
    }
  }
  return { files: seen.size, violations };
}
