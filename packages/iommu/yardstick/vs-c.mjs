// `pnpm bench:vs-c`: dmasim's IommuDomain against the C radix table of radix.c on the same work, in
// interleaved rounds. Each round runs the C program once (a fresh process: map one call per page into
// an empty table, unmap one call per page, remap the range in one call) and then the same three steps
// on a fresh dmasim unit (4 KiB leaves only, as the C table has) in this process, and takes the ratio
// dmasim / C of each step. The first rounds warm the JIT up and are not counted. Prints the median of
// the per-round ratios against the targets.
//
// Run from the repository root with the benchmark loader (the root package.json's script does):
//   node --import ./scripts/bench-loader/register.mjs packages/iommu/yardstick/vs-c.mjs [rounds] [pages]
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Trace } from "@dmasim/trace";
import { Iommu, IommuProt, SZ_4K, unsafeIova as toIova } from "@dmasim/iommu";
import { unsafePhysAddr as physAddr } from "@dmasim/memory";

const rounds = Number(process.argv[2] ?? 15);
const pages = Number(process.argv[3] ?? 1_048_576);
const WARMUP = 3;
const TARGETS = { map: 1.5, unmap: 1.5, remap: 2 };

function compiler() {
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

const cc = compiler();
if (cc === undefined) {
  console.log("bench:vs-c skipped: no C compiler found (cc, gcc or clang; or set CC). Nothing was measured.");
  process.exit(0);
}
const dir = mkdtempSync(join(tmpdir(), "dmasim-vs-c-"));
const exe = join(dir, "radix");
execFileSync(cc, ["-O2", "-o", exe, fileURLToPath(new URL("radix.c", import.meta.url))], { stdio: "inherit" });

function runC() {
  const [map, unmap, remap, tables] = execFileSync(exe, [String(pages)], { encoding: "utf8" }).trim().split(" ").map(Number);
  return { map, unmap, remap, tables };
}

const RW = IommuProt.READ | IommuProt.WRITE;
const PHYS = 2 ** 32;
const PHYS2 = 2 ** 34;
const page = SZ_4K;

function runDmasim() {
  const dom = new Iommu(new Trace(), { pgsizeBitmap: SZ_4K }).allocDomain("paging");
  let bad = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < pages; i++) {
    if (dom.map(toIova(i * page), physAddr(PHYS + i * page), page, RW).mapped !== page) bad++;
  }
  const t1 = process.hrtime.bigint();
  let unmapped = 0;
  for (let i = 0; i < pages; i++) unmapped += dom.unmap(toIova(i * page), page).unmapped;
  const t2 = process.hrtime.bigint();
  dom.map(toIova(0), physAddr(PHYS2), pages * page, RW);
  const t3 = process.hrtime.bigint();
  if (bad !== 0 || unmapped !== pages * page || dom.iovaToPhys(toIova((pages - 1) * page)) !== PHYS2 + (pages - 1) * page) {
    throw new Error("dmasim did not do the work");
  }
  return { map: Number(t1 - t0), unmap: Number(t2 - t1), remap: Number(t3 - t2), tables: dom.ptPages };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const ns = (t) => (t / pages).toFixed(2).padStart(6);

const ratios = { map: [], unmap: [], remap: [] };
console.log(`dmasim IommuDomain vs C radix table (${cc} -O2), ${pages} pages of 4 KiB, ${rounds} rounds after ${WARMUP} warm-up rounds`);
console.log("round   map ns/page C | dmasim   unmap ns/page C | dmasim   remap ns/page C | dmasim");
try {
  for (let r = 0; r < WARMUP + rounds; r++) {
    const c = runC();
    const d = runDmasim();
    if (c.tables !== d.tables) throw new Error(`page-table pages differ: C ${c.tables}, dmasim ${d.tables}`);
    if (r < WARMUP) continue;
    for (const k of ["map", "unmap", "remap"]) ratios[k].push(d[k] / c[k]);
    console.log(
      `${String(r - WARMUP + 1).padStart(5)}   ${ns(c.map)} | ${ns(d.map)}   ${ns(c.unmap)} | ${ns(d.unmap)}   ${ns(c.remap)} | ${ns(d.remap)}`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log("median of per-round ratios dmasim / C (target):");
for (const k of ["map", "unmap", "remap"]) {
  const m = median(ratios[k]);
  const name = { map: "map, one call per page", unmap: "unmap, one call per page", remap: "remap, one call" }[k];
  console.log(`  ${name.padEnd(26)} ${m.toFixed(2)}x  (<= ${TARGETS[k]}x: ${m <= TARGETS[k] ? "met" : "missed"})`);
}
