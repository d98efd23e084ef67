// The C yardstick's build and run, shared by vs-c.mjs and floor.mjs: radix.c built once with the first
// compiler found (`$CC`, cc, gcc, clang), run as a fresh process per round.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

function findCompiler() {
  for (const cc of [process.env.CC, "cc", "gcc", "clang"]) {
    if (cc === undefined || cc === "") continue;
    try {
      execFileSync(cc, ["--version"], { stdio: "ignore" });
      return cc;
    } catch {
      // not this one
    }
  }
  return undefined;
}

/**
 * Builds radix.c with `-O2` into a temporary folder. Returns undefined when no compiler is found (the
 * caller says so and measures nothing), else `{ cc, run(pages), dispose() }`; `run` gives the C
 * program's elapsed and CPU time per step in ns and the tables it allocated.
 */
export function buildRadix() {
  const cc = findCompiler();
  if (cc === undefined) return undefined;
  const dir = mkdtempSync(join(tmpdir(), "dmasim-vs-c-"));
  const exe = join(dir, "radix");
  execFileSync(cc, ["-O2", "-o", exe, fileURLToPath(new URL("radix.c", import.meta.url))], { stdio: "inherit" });
  return {
    cc,
    run(pages) {
      const f = execFileSync(exe, [String(pages)], { encoding: "utf8" }).trim().split(" ").map(Number);
      return { wall: { map: f[0], unmap: f[1], remap: f[2] }, cpu: { map: f[4], unmap: f[5], remap: f[6] }, tables: f[3] };
    },
    dispose() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
