// `pnpm bench:vs-c`: dmasim's IommuDomain against the C radix table of radix.c on the same work, in
// interleaved rounds. Each round runs the C program once (a fresh process: map one call per page into
// an empty table, unmap one call per page, remap the range in one call into the tables left linked)
// and then the same three steps on a fresh dmasim unit (4 KiB leaves only, as the C table has) in this
// process, and takes the ratio dmasim / C of each step. The first rounds warm the JIT up and are not
// counted. Prints the median of the per-round ratios against the targets.
//
// dmasim's unmap is the kernel-shaped one, as a kernel caller unmaps: iommu_unmap_fast per page into one
// caller-owned gather (`domain[unmapFast]` of `@dmasim/iommu/internal`), and one iommu_iotlb_sync at the end
// (the IOTLB range invalidation and the page-table pages' release, timed with the step) — what
// iommu_unmap does over a range and VFIO over a run of pages. The public `unmap`, which builds a result
// object per call for its caller, is not what is timed.
//
// Both sides are timed by elapsed time and by the process's CPU time (user + system: page faults are
// part of the work). The ratios are taken on CPU time, which other jobs on a shared machine inflate far
// less than elapsed time; the elapsed-time medians are printed too.
//
// Run from the repository root (the root package.json's script does this):
//   node --import ./scripts/bench-loader/register.mjs packages/iommu/yardstick/vs-c.mjs [rounds] [pages]
import { buildRadix } from "./c.mjs";
import { median } from "./measure.mjs";
import { Trace } from "@dmasim/trace";
import { Iommu, IommuProt, SZ_4K, unsafeIova as toIova } from "@dmasim/iommu";
import { IommuIotlbGather, iotlbSync, unmapFast } from "@dmasim/iommu/internal";
import { unsafePhysAddr as physAddr } from "@dmasim/memory";

const rounds = Number(process.argv[2] ?? 15);
const pages = Number(process.argv[3] ?? 1_048_576);
const WARMUP = 3;
const STEPS = ["map", "unmap", "remap"];
const TARGETS = { map: 1.5, unmap: 1.5, remap: 2 };
const NAMES = { map: "map, one call per page", unmap: "unmap_fast, one call per page", remap: "remap, one call" };

const radix = buildRadix();
if (radix === undefined) {
  console.log("bench:vs-c skipped: no C compiler found (cc, gcc or clang; or set CC). Nothing was measured.");
  process.exit(0);
}
const cc = radix.cc;
const runC = () => radix.run(pages);

const RW = IommuProt.READ | IommuProt.WRITE;
const PHYS = 2 ** 32;
const PHYS2 = 2 ** 34;
const page = SZ_4K;

/** Elapsed and CPU time now, in ns. */
function stamp() {
  const c = process.cpuUsage();
  return { wall: Number(process.hrtime.bigint()), cpu: (c.user + c.system) * 1000 };
}

// One function per step, as a caller's code would be: a step timed inside one long function would share
// that function's type feedback and optimisation with the other steps.
function mapEachPage(dom) {
  let bad = 0;
  for (let i = 0; i < pages; i++) {
    if (dom.map(toIova(i * page), physAddr(PHYS + i * page), page, RW).mapped !== page) bad++;
  }
  return bad;
}

function unmapEachPage(dom) {
  const gather = new IommuIotlbGather();
  let unmapped = 0;
  for (let i = 0; i < pages; i++) unmapped += dom[unmapFast](toIova(i * page), page, gather);
  dom[iotlbSync](gather);
  return unmapped;
}

function remapInOneCall(dom) {
  return dom.map(toIova(0), physAddr(PHYS2), pages * page, RW).mapped;
}

function runDmasim() {
  const dom = new Iommu(new Trace(), { pgsizeBitmap: SZ_4K }).allocDomain("paging");
  const t0 = stamp();
  const bad = mapEachPage(dom);
  const t1 = stamp();
  const unmapped = unmapEachPage(dom);
  const t2 = stamp();
  const remapped = remapInOneCall(dom);
  const t3 = stamp();
  if (bad !== 0 || unmapped !== pages * page || remapped !== pages * page || dom.iovaToPhys(toIova((pages - 1) * page)) !== PHYS2 + (pages - 1) * page) {
    throw new Error("dmasim did not do the work");
  }
  const step = (k) => ({ map: t1[k] - t0[k], unmap: t2[k] - t1[k], remap: t3[k] - t2[k] });
  return { wall: step("wall"), cpu: step("cpu"), tables: dom.ptPages };
}

const ns = (t) => (t / pages).toFixed(2).padStart(6);

const ratios = { map: [], unmap: [], remap: [] };
const wallRatios = { map: [], unmap: [], remap: [] };
const perPage = { c: { map: [], unmap: [], remap: [] }, d: { map: [], unmap: [], remap: [] } };
console.log(`dmasim IommuDomain vs C radix table (${cc} -O2), ${pages} pages of 4 KiB, ${rounds} rounds after ${WARMUP} warm-up rounds`);
console.log("dmasim unmaps with iommu_unmap_fast per page into one gather, then one iommu_iotlb_sync (domain[unmapFast], domain[iotlbSync])");
console.log("CPU ns per page:  map C | dmasim    unmap C | dmasim    remap C | dmasim");
try {
  for (let r = 0; r < WARMUP + rounds; r++) {
    const c = runC();
    const d = runDmasim();
    if (c.tables !== d.tables) throw new Error(`page-table pages differ: C ${c.tables}, dmasim ${d.tables}`);
    if (r < WARMUP) continue;
    for (const k of STEPS) {
      ratios[k].push(d.cpu[k] / c.cpu[k]);
      wallRatios[k].push(d.wall[k] / c.wall[k]);
      perPage.c[k].push(c.cpu[k] / pages);
      perPage.d[k].push(d.cpu[k] / pages);
    }
    console.log(
      `round ${String(r - WARMUP + 1).padStart(3)}    ${ns(c.cpu.map)} | ${ns(d.cpu.map)}   ${ns(c.cpu.unmap)} | ${ns(d.cpu.unmap)}   ${ns(c.cpu.remap)} | ${ns(d.cpu.remap)}`,
    );
  }
} finally {
  radix.dispose();
}
console.log("median of per-round ratios dmasim / C, CPU time (elapsed time in brackets); median ns per page C | dmasim:");
for (const k of STEPS) {
  const m = median(ratios[k]);
  const verdict = m <= TARGETS[k] ? "met" : "missed";
  console.log(
    `  ${NAMES[k].padEnd(26)} ${m.toFixed(2)}x (${median(wallRatios[k]).toFixed(2)}x)  target <= ${TARGETS[k]}x: ${verdict}` +
      `   ${median(perPage.c[k]).toFixed(2)} | ${median(perPage.d[k]).toFixed(2)} ns`,
  );
}
