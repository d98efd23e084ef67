import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// DESIGN.md: no module-level mutable state. Scratch buffers belong to a kernel, a device or a call, so two
// kernels never share them and a nested call from a trace subscriber cannot corrupt the outer one. This
// test scans the model's sources (every package and app, tests and benchmarks excepted) for module-level
// `let`/`var`, module-level collections and typed arrays, and module-level arrays that the file writes to.
// It lives in the bottom package because the rule is the whole repository's; the others are its siblings.

const repo = fileURLToPath(new URL("../../..", import.meta.url));

/**
 * Module-level values the scan would flag that are not state, each with the reason. Keep it short: a
 * new entry needs a reason a reviewer accepts.
 */
const ALLOWED: Readonly<Record<string, string>> = {
  "apps/nvme-example/src/compare.ts": "a command's entry script: its top level is the program's main, run once per process",
};

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name !== "node_modules" && name !== "dist") out.push(...sourceFiles(p));
    } else if (/\.m?ts$/.test(name) && !/\.(test|bench)\.m?ts$/.test(name) && !name.endsWith(".d.ts")) {
      out.push(p);
    }
  }
  return out;
}

function modelSources(): string[] {
  const files: string[] = [];
  for (const top of ["packages", "apps"]) {
    let entries: string[];
    try {
      entries = readdirSync(join(repo, top));
    } catch {
      continue;
    }
    for (const pkg of entries) {
      const src = join(repo, top, pkg, "src");
      try {
        if (statSync(src).isDirectory()) files.push(...sourceFiles(src));
      } catch {
        // a directory without sources (being created by someone else): nothing to scan
      }
    }
  }
  return files;
}

const TOP_LET = /^(?:export\s+)?(?:let|var)\s+([A-Za-z_$][\w$]*)/;
const TOP_COLLECTION = /^(?:export\s+)?const\s+([A-Za-z_$][\w$]*)\s*(?::[^=]+)?=\s*new\s+(Map|Set|WeakMap|WeakSet|Array|(?:Ui|I)nt(?:8|16|32)Array|Uint8ClampedArray|Float(?:32|64)Array|Big(?:Ui|I)nt64Array|ArrayBuffer)\b/;
const TOP_ARRAY = /^(?:export\s+)?const\s+([A-Za-z_$][\w$]*)\s*(?::([^=]+))?=\s*\[/;
const TOP_OBJECT = /^(?:export\s+)?const\s+([A-Za-z_$][\w$]*)\s*(?::[^=]+)?=\s*\{/;
const MUTATORS = "push|pop|splice|shift|unshift|sort|reverse|fill|copyWithin|set|add|delete|clear";

/** Module-level mutable state in one file's text, as "line: text" findings. */
export function findModuleState(text: string): string[] {
  const found: string[] = [];
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    const at = `${i + 1}: ${line.trim()}`;
    if (TOP_LET.test(line) || TOP_COLLECTION.test(line)) {
      found.push(at);
      return;
    }
    const obj = TOP_OBJECT.exec(line);
    if (obj !== null) {
      // A module-level object literal is a constant table unless the file assigns to its fields.
      const name = obj[1] ?? "";
      if (new RegExp(`\\b${name}\\s*(?:\\.[\\w$]+|\\[[^\\]]*\\])\\s*(?:=[^=]|\\+\\+|--|[-+*/|&]=)`).test(text)) found.push(at);
      return;
    }
    const arr = TOP_ARRAY.exec(line);
    if (arr === null) return;
    const [, name = "", type = ""] = arr;
    // A module-level array is a constant table unless the file writes into it.
    const written = new RegExp(`\\b${name}\\s*(?:\\[[^\\]]*\\]\\s*=[^=]|\\.(?:${MUTATORS})\\()`).test(text);
    if (written && !type.trim().startsWith("readonly")) found.push(at);
  });
  return found;
}

describe("no module-level mutable state", () => {
  it("the scan finds each kind of module-level state it looks for (and not constant tables)", () => {
    expect(findModuleState("let scratch = new Float64Array(64);")).toHaveLength(1);
    expect(findModuleState("export var n = 0;")).toHaveLength(1);
    expect(findModuleState("const cache = new Map<string, number>();")).toHaveLength(1);
    expect(findModuleState("const buf: Uint32Array = new Uint32Array(8);")).toHaveLength(1);
    expect(findModuleState("const seen: string[] = [];\nexport function f(s: string) { seen.push(s); }")).toHaveLength(1);
    expect(findModuleState("const t = [0, 1];\nexport function f() { t[0] = 2; }")).toHaveLength(1);
    expect(findModuleState("const LEVEL = [0, 12, 21];\nexport const g = (i: number) => LEVEL[i] === 0;")).toEqual([]);
    expect(findModuleState("function f() {\n  let x = 0;\n  return x;\n}")).toEqual([]);
    expect(findModuleState("const KIND = { A: 0 } as const;")).toEqual([]);
    expect(findModuleState("const stats = { calls: 0 };\nexport function f() { stats.calls++; }")).toHaveLength(1);
    expect(findModuleState("const byName: Record<string, number> = {};\nexport function f(k: string) { byName[k] = 1; }")).toHaveLength(1);
  });

  it("no source file of a package or app keeps mutable state at module level", () => {
    const files = modelSources();
    expect(files.length).toBeGreaterThan(50);
    const findings: string[] = [];
    for (const file of files) {
      const rel = relative(repo, file).split("\\").join("/");
      for (const f of findModuleState(readFileSync(file, "utf8"))) {
        const key = `${rel}:${f.slice(f.indexOf(":") + 2)}`;
        if (!Object.keys(ALLOWED).some((k) => key.startsWith(k))) findings.push(`${rel}:${f}`);
      }
    }
    expect(findings).toEqual([]);
  });
});
