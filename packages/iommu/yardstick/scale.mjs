// Page-table cost and host memory as a domain grows to 1 TiB of 4 KiB pages (268,435,456 PTEs).
//
// Builds a tree with 256 map calls of 4 GiB each (one call per 4 GiB: 1,048,576 leaves and the 2052
// tables under them) and times every call. Then, in two domains, one holding 4 GiB and the other
// 1 TiB, maps and unmaps a further 4 GiB window one call per page (the window's tables made
// beforehand), alternating between the domains for `rounds` rounds after warm-up, and takes the
// median of the per-round ratios 1 TiB / 4 GiB. Also reports the host memory the page table holds per
// mapped page (its chunks and use counts, and the growth of the process's ArrayBuffer total). Needs
// about 2.2 GB of memory.
//
// From the repository root:
//   node --expose-gc --import ./scripts/bench-loader/register.mjs packages/iommu/yardstick/scale.mjs [rounds]
import { Trace } from "@dmasim/trace";
import { Iommu, IommuProt, SZ_4K, unsafeIova as toIova } from "@dmasim/iommu";
import { domainPageTable } from "@dmasim/iommu/internal";
import { unsafePhysAddr as physAddr } from "@dmasim/memory";
import { cpuNs, median } from "./measure.mjs";

const rounds = Number(process.argv[2] ?? 7);
const WARMUP = 3;
const RW = IommuProt.READ | IommuProt.WRITE;
const PAGE = SZ_4K;
const STEP_PAGES = 1_048_576; // 4 GiB
const STEP = STEP_PAGES * PAGE;
const STEPS = 256; // 1 TiB
const gc = globalThis.gc ?? (() => undefined);

function mapWindowEachPage(dom, base) {
  for (let i = 0; i < STEP_PAGES; i++) dom.map(toIova(base + i * PAGE), physAddr(i * PAGE), PAGE, RW);
}

function unmapWindowEachPage(dom, base) {
  for (let i = 0; i < STEP_PAGES; i++) dom.unmap(toIova(base + i * PAGE), PAGE);
}

/** CPU ns per page of mapping, then unmapping, the window at `base` one call per page. */
function perPage(dom, base) {
  const t0 = cpuNs();
  mapWindowEachPage(dom, base);
  const t1 = cpuNs();
  unmapWindowEachPage(dom, base);
  const t2 = cpuNs();
  return { map: (t1 - t0) / STEP_PAGES, unmap: (t2 - t1) / STEP_PAGES };
}

/** A domain of 4 KiB leaves holding `steps` × 4 GiB at IOVA 0, and the window's tables linked and empty. */
function build(steps, times) {
  const dom = new Iommu(new Trace(), { pgsizeBitmap: SZ_4K }).allocDomain("paging");
  for (let s = 0; s < steps; s++) {
    const t0 = cpuNs();
    dom.map(toIova(s * STEP), physAddr(s * STEP), STEP, RW);
    times?.push((cpuNs() - t0) / STEP_PAGES);
  }
  dom.map(toIova(WINDOW), physAddr(0), STEP, RW);
  dom.unmap(toIova(WINDOW), STEP - PAGE); // short of the span: the tables stay linked
  dom.unmap(toIova(WINDOW + STEP - PAGE), PAGE);
  return dom;
}

// The window: the last 4 GiB below 2 TiB, above anything built.
const WINDOW = 2 * STEPS * STEP - STEP;
const f = (x) => x.toFixed(2);

gc();
const abBefore = process.memoryUsage().arrayBuffers;
const batched = [];
const big = build(STEPS, batched);
const pages = STEPS * STEP_PAGES;
const host = big[domainPageTable]?.hostBytes;
const arrayBuffers = (process.memoryUsage().arrayBuffers - abBefore) / pages;
if (big.iovaToPhys(toIova(STEPS * STEP - PAGE + 5)) !== STEPS * STEP - PAGE + 5) throw new Error("1 TiB not mapped");
const small = build(1);

const ratios = { map: [], unmap: [] };
const per = { small: { map: [], unmap: [] }, big: { map: [], unmap: [] } };
for (let r = 0; r < WARMUP + rounds; r++) {
  const a = perPage(small, WINDOW);
  const b = perPage(big, WINDOW);
  if (r < WARMUP) continue;
  for (const k of ["map", "unmap"]) {
    ratios[k].push(b[k] / a[k]);
    per.small[k].push(a[k]);
    per.big[k].push(b[k]);
  }
}

console.log("IO page table from empty to 1 TiB of 4 KiB pages (CPU time)");
const second = batched[1] ?? NaN;
const last8 = median(batched.slice(-8));
console.log(
  `map 4 GiB in one call (tables allocated on the way), ns per page: first ${f(batched[0] ?? NaN)}, second ${f(second)}, ` +
    `last 8 (at ~1 TiB) ${f(last8)}: ${f(last8 / second)}x the second (target <= 1.5x)`,
);
const mean = batched.reduce((x, y) => x + y, 0) / STEPS;
console.log(`  mean of all 256 calls ${f(mean)} (${f(mean / second)}x the second); worst call ${f(Math.max(...batched.slice(1)))} (the first excluded: it warms the JIT up)`);
for (const k of ["map", "unmap"]) {
  console.log(
    `${k} one call per page into a 4 GiB window, ns per page: with 4 GiB mapped ${f(median(per.small[k]))}, with 1 TiB mapped ${f(median(per.big[k]))}; ` +
      `median of ${rounds} per-round ratios ${f(median(ratios[k]))}x (target <= 1.5x)`,
  );
}
console.log(
  `host memory per mapped 4 KiB page at 1 TiB: page-table storage ${host === undefined ? "n/a" : f(host / pages)} B, ` +
    `growth of the process's ArrayBuffers ${f(arrayBuffers)} B (target <= 10 B); modelled (4 KiB per table) ${f(big.ptBytes / pages)} B`,
);
