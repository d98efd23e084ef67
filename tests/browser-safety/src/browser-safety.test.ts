import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { checkPackage, checkSource, MODEL_PACKAGES } from "./check.js";

const PACKAGES = fileURLToPath(new URL("../../../packages/", import.meta.url));

describe("browser safety of the model packages", () => {
  it.each(MODEL_PACKAGES)("%s: nothing its entry points reach needs Node", (name) => {
    const { files, violations } = checkPackage(`${PACKAGES}${name}`);
    expect(files).toBeGreaterThan(0);
    expect(violations).toEqual([]);
  });

  it("the check finds Node modules, Node globals, apps and unknown dependencies, and ignores names and types", () => {
    const text = [
      'import { readFileSync } from "node:fs";',
      'import path from "path";',
      'import { main } from "@dmasim/cli";',
      'import { something } from "left-pad";',
      'import { z } from "zod";',
      'import { DmaError } from "@dmasim/dma";',
      "const home = process.env.HOME;",
      'const b = Buffer.from("x");',
      'const m = await import("node:os");',
      "interface Local { process: number }",
      "function f(o: { Buffer: number }): number { return o.Buffer; }",
    ].join("\n");
    const problems = checkSource("x.ts", text).map((v) => v.problem);
    expect(problems).toEqual([
      "imports the Node module node:fs",
      "imports the Node module path",
      "imports @dmasim/cli, which is not a model package",
      "imports left-pad, a third-party module not known to run in a browser",
      "imports the Node module node:os",
      "uses the Node global process (line 7)",
      "uses the Node global Buffer (line 8)",
    ]);
    // A local declaration of the same name is the file's own, not Node's.
    expect(checkSource("y.ts", "interface Buffer { n: number }\nconst bufs: Buffer[] = [];\nexport const n = bufs.length;")).toEqual([]);
  });
});
