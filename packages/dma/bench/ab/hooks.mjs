// Module hooks of the A/B runner (ab.mjs): `vitest` resolves to shim.mjs, which runs the benchmark file's
// cases with tinybench as `vitest bench` does; and when a benchmark body from another tree is given
// (DMASIM_AB_BODY), its relative imports (`./index.js`) resolve to the measured tree's packages/dma/src
// (DMASIM_AB_SRC), so both trees run the same body. Everything else is left to the tree's bench loader.
import { existsSync } from "node:fs";

const body = process.env.DMASIM_AB_BODY;
const src = process.env.DMASIM_AB_SRC;

export function resolve(specifier, context, nextResolve) {
  if (specifier === "vitest") return { url: new URL("./shim.mjs", import.meta.url).href, format: "module", shortCircuit: true };
  if (body !== undefined && src !== undefined && context.parentURL === body && specifier.startsWith("./") && specifier.endsWith(".js")) {
    const candidate = new URL(`${specifier.slice(2, -3)}.ts`, src);
    if (existsSync(candidate)) return { url: candidate.href, format: "module", shortCircuit: true };
  }
  return nextResolve(specifier, context);
}
