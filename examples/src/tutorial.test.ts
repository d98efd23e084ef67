import { readFileSync, writeFileSync } from "node:fs";
import * as dma from "@dmasim/dma";
import * as memory from "@dmasim/memory";
import * as pcieP2p from "@dmasim/pcie-p2p";
import * as scatterlist from "@dmasim/scatterlist";
import { expect, it, vi } from "vitest";
import { readmeBlocks, runReadmeBlock } from "../../scripts/readme-example.js";

// docs/two-step-tutorial.md: every ```ts block runs, in order, each seeing the top-level names of the ones
// before it, and what it prints must be the ```text block that follows it. After a deliberate change,
// `UPDATE_EXAMPLES=1 npx vitest run --project examples` rewrites those output blocks from a real run.

const doc = new URL("../../docs/two-step-tutorial.md", import.meta.url);
const modules = { "@dmasim/dma": dma, "@dmasim/memory": memory, "@dmasim/pcie-p2p": pcieP2p, "@dmasim/scatterlist": scatterlist };
/** The values a block imports, as the later blocks see them (a block's imports are not its bindings; `type X` imports have none). */
function importedNames(block: string): Record<string, unknown> {
  const names: Record<string, unknown> = {};
  for (const m of block.matchAll(/^import \{([^}]*)\} from "([^"]+)";$/gm)) {
    const mod = modules[m[2] as keyof typeof modules] as Record<string, unknown>;
    for (const name of (m[1] ?? "").split(",").map((n) => n.trim()).filter((n) => n !== "" && !n.startsWith("type "))) names[name] = mod[name];
  }
  return names;
}

const PAIR = /^```ts\n[\s\S]*?^```\n\n```text\n([\s\S]*?)^```$/gm;

it("the tutorial's code runs and prints what the text shows", () => {
  const text = readFileSync(doc, "utf8");
  const expected = [...text.matchAll(PAIR)].map((m) => (m[1] ?? "").replace(/\n$/, "").split("\n"));
  const tsBlocks = [...text.matchAll(/^```ts$/gm)].length;
  expect(expected.length, "every ```ts block is followed by its ```text output").toBe(tsBlocks);

  const blocks = readmeBlocks(doc);
  let scope: Record<string, unknown> = {};
  const printed: string[][] = [];
  for (let index = 0; index < tsBlocks; index++) {
    const lines: string[] = [];
    const spy = vi.spyOn(console, "log").mockImplementation((...args: unknown[]) => {
      lines.push(args.map(String).join(" "));
    });
    try {
      scope = { ...scope, ...runReadmeBlock(doc, modules, { index, scope }), ...importedNames(blocks[index] ?? "") };
    } finally {
      spy.mockRestore();
    }
    printed.push(lines);
  }

  if (process.env.UPDATE_EXAMPLES === "1") {
    let i = 0;
    writeFileSync(doc, text.replace(PAIR, (whole, output: string) => whole.replace(`\`\`\`text\n${output}`, `\`\`\`text\n${(printed[i++] ?? []).join("\n")}\n`)));
    return;
  }
  expect(printed).toEqual(expected);
});
