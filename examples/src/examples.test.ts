import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it, vi } from "vitest";

// Each example ends with the output it prints, as a `// Output:` comment. The test runs the program and
// checks that it still prints exactly that, so the comment cannot drift from the code. After a deliberate
// change, `UPDATE_EXAMPLES=1 npx vitest run --project examples` rewrites the comments from a real run.

const dir = new URL("./", import.meta.url);
const PACKAGES = ["trace", "memory", "iommu", "pcie-p2p", "dma", "scatterlist", "bio", "nvme", "hmm-odp", "rdma", "dmabuf"];
const programs = readdirSync(dir)
  .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts") && !f.startsWith("test-"))
  .sort();
const MARK = "// Output:";

/** The program's text up to its output comment, and the output lines the comment holds. */
function split(source: string): { code: string; output: string[] | undefined } {
  const at = source.indexOf(`\n${MARK}\n`);
  if (at < 0) return { code: source, output: undefined };
  const output = source
    .slice(at + MARK.length + 2)
    .replace(/\n$/, "")
    .split("\n")
    .map((l) => l.replace(/^\/\/ ?/, ""));
  return { code: source.slice(0, at + 1), output };
}

/** Runs a program as its first import and returns what it printed with console.log, line by line. */
async function run(file: string): Promise<string[]> {
  const lines: string[] = [];
  const spy = vi.spyOn(console, "log").mockImplementation((...args: unknown[]) => {
    lines.push(...args.map(String).join(" ").split("\n"));
  });
  try {
    await import(fileURLToPath(new URL(file, dir)));
  } finally {
    spy.mockRestore();
  }
  return lines;
}

it("there is one program per package, and the README indexes each", () => {
  expect(programs).toEqual([...PACKAGES.map((p) => `${p}.ts`)].sort());
  const readme = readFileSync(new URL("../README.md", dir), "utf8");
  for (const p of programs) expect(readme).toContain(`(src/${p})`);
});

describe.each(programs)("%s", (file) => {
  const source = readFileSync(new URL(file, dir), "utf8");

  it("imports only the packages' public entry points", () => {
    const specifiers = [...source.matchAll(/^import [^;]*? from "([^"]+)";$/gms)].map((m) => m[1]);
    expect(specifiers.length).toBeGreaterThan(0);
    for (const s of specifiers) expect(s).toMatch(/^@dmasim\/[a-z0-9-]+$/);
  });

  it("prints the output written at its end", async () => {
    const printed = await run(file);
    const { code, output } = split(source);
    if (process.env.UPDATE_EXAMPLES === "1") {
      writeFileSync(new URL(file, dir), `${code}${MARK}\n${printed.map((l) => (l === "" ? "//" : `// ${l}`)).join("\n")}\n`);
      return;
    }
    expect(output, `${file} has no "${MARK}" comment at its end`).toBeDefined();
    expect(printed).toEqual(output);
  });
});
