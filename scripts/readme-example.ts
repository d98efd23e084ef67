// README example tests: a package README's ```ts blocks are run as written, so the README cannot drift
// from the code. The block's imports are served from the modules the test passes (the package's own
// source, not a build), and its top-level bindings come back for the test to check.
import { readFileSync } from "node:fs";
import ts from "typescript";

/** The ```ts blocks of a Markdown file, in order, without their fences. */
export function readmeBlocks(readme: URL): string[] {
  const text = readFileSync(readme, "utf8");
  return [...text.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1] ?? "");
}

/** The names a block declares at its top level (const, let, var, function, class; destructuring too). */
function topLevelNames(source: ts.SourceFile): string[] {
  const names: string[] = [];
  const bind = (name: ts.BindingName): void => {
    if (ts.isIdentifier(name)) names.push(name.text);
    else for (const e of name.elements) if (!ts.isOmittedExpression(e)) bind(e.name);
  };
  for (const st of source.statements) {
    if (ts.isVariableStatement(st)) for (const d of st.declarationList.declarations) bind(d.name);
    else if ((ts.isFunctionDeclaration(st) || ts.isClassDeclaration(st)) && st.name !== undefined) names.push(st.name.text);
  }
  return names;
}

export interface ReadmeBlockOptions {
  /** Which ```ts block of the file; default the first. */
  readonly index?: number;
  /** Names a block uses without importing them (a fragment that continues the text around it). */
  readonly scope?: Readonly<Record<string, unknown>>;
}

/**
 * Runs a ```ts block of `readme` with `modules` as its imports (keyed by the specifier the block writes)
 * and returns its top-level bindings. A block that imports anything else fails.
 */
export function runReadmeBlock(readme: URL, modules: Readonly<Record<string, unknown>>, options: ReadmeBlockOptions = {}): Record<string, unknown> {
  const index = options.index ?? 0;
  const scope = options.scope ?? {};
  const block = readmeBlocks(readme)[index];
  if (block === undefined) throw new Error(`${readme.pathname} has no \`\`\`ts block ${index}`);
  const source = ts.createSourceFile("readme-example.ts", block, ts.ScriptTarget.ES2022, true);
  const names = topLevelNames(source);
  const js = ts.transpileModule(block, {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: false },
  }).outputText;
  const require = (specifier: string): unknown => {
    if (!(specifier in modules)) throw new Error(`the README block imports ${specifier}, which the test did not provide`);
    return modules[specifier];
  };
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- the block is this repository's own README
  const run = new Function("require", "exports", ...Object.keys(scope), `${js}\nreturn { ${names.join(", ")} };`) as (
    ...args: unknown[]
  ) => Record<string, unknown>;
  return run(require, {}, ...Object.values(scope));
}
