// `pnpm bench:vs-c:floor`: how low a per-call unmap of one 4 KiB page can go in JavaScript on this
// machine, next to C's whole call (radix.c's `unmap_page`: a 4-level walk and the clear, `noinline`).
// It answers "is ≤ 1.5× C reachable for iommu_unmap_fast one page at a time?" by measuring the floors
// under dmasim's call, each with nothing of dmasim's around it:
//
//   bare clear loop    a loop clearing the same 1,048,576 entries of the same storage (Float64Array
//                      chunks of 64 tables of 512 entries, as IoPageTable keeps them), testing each for
//                      a hole: the floor of any table in JS, no call, no walk.
//   walk-cache unmap   the smallest single-leaf unmap worth the name: one object holding a one-table walk
//                      cache (base, span, chunk, offset, inverse leaf size), a call per page that tests
//                      the cache, derives the index, refuses a misaligned IOVA, clears and counts the
//                      table's use; a miss finds the table by arithmetic (no walk at all). What
//                      IoPageTable.unmapLeaf does on a hit, 511 calls of every 512.
//   + one method       the same called through one more object's method, which forwards the call (the
//                      least a domain can be: no check, no counter, no gather).
//   + the domain's     the walk-cache unmap behind the least of what dmasim's domain[unmapFast] does on
//     duties           every call (the same tests, written as small as they go): the gather's owner, the
//                      size and the IOVA's type, the deferred call and hole counts, the "IOTLB holds
//                      entries or someone listens" flag, the gather's range (start and end).
//   fastest shape      the same duties in the fastest shape we could write (FusedDomain below: one
//                      object, the tests folded into the cache window, the gather's range kept as table
//                      indexes): a bound on what any restructuring of dmasim's could reach.
//   unmapLeaf          dmasim's IoPageTable.unmapLeaf called directly (the page table of an IommuDomain).
//   unmap_fast         dmasim's domain[unmapFast] into one gather, one iotlbSync (what `pnpm bench:vs-c`
//                      times): the argument checks, the counters, the IOTLB test, the gather's range.
//   JS→Wasm call       a loop calling a WebAssembly function that returns a constant and does nothing
//                      else: the entry cost alone that a page table kept in Wasm memory, with its
//                      unmap in Wasm, would pay per call (TurboFan inlines the JS-to-Wasm wrapper).
//
// FLOOR_ONLY=<text> runs only the variants whose name contains the text.
//
// Each round runs the C program (a fresh process) and then every JS variant on fresh storage; the first
// rounds warm the JIT up. Prints per variant the median ns per page and the median of the per-round
// ratios to C's unmap_page, in process CPU time.
//
// From the repository root:
//   pnpm bench:vs-c:floor [rounds]   (node --import ./scripts/bench-loader/register.mjs packages/iommu/yardstick/floor.mjs)
import { Trace } from "@dmasim/trace";
import { Iommu, IommuProt, SZ_4K, unsafeIova as toIova } from "@dmasim/iommu";
import { IommuIotlbGather, domainPageTable, iotlbSync, unmapFast } from "@dmasim/iommu/internal";
import { unsafePhysAddr as physAddr } from "@dmasim/memory";
import { buildRadix } from "./c.mjs";
import { cpuNs, median } from "./measure.mjs";

const rounds = Number(process.argv[2] ?? 9);
const WARMUP = 3;
const PAGES = 1_048_576;
const PAGE = SZ_4K;
const N = 512;
const CHUNK_TABLES = 64;
/** Leaf tables of 4 GiB, and the three tables above them that a real tree also holds. */
const LEAF_TABLES = PAGES / N;
const RW = IommuProt.READ | IommuProt.WRITE;

/** Chunks holding LEAF_TABLES + 3 tables with every leaf present (a nonzero PTE). */
function filledChunks() {
  const chunks = [];
  for (let t = 0; t < LEAF_TABLES + 3; t += CHUNK_TABLES) chunks.push(new Float64Array(CHUNK_TABLES * N).fill(4099));
  return chunks;
}

function bareClearLoop(chunks) {
  let cleared = 0;
  for (let i = 0; i < PAGES; i++) {
    const t = (i >>> 9) + 3;
    const slab = chunks[t >>> 6];
    const slot = (t & 63) * N + (i & 511);
    if (slab[slot] !== 0) {
      slab[slot] = 0;
      cleared++;
    }
  }
  return cleared * PAGE;
}

class WalkCacheTable {
  #chunks;
  #base = 0;
  #span = 0;
  #inv = 0;
  #chunk;
  #offset = 0;
  #delta = 0;
  #used;
  #table = 0;
  constructor(chunks) {
    this.#chunks = chunks;
    this.#chunk = chunks[0];
    this.#used = new Uint16Array(LEAF_TABLES + 3).fill(N);
    // Doubles from birth, as IoPageTable's cache fields are.
    this.#base = 0.5;
    this.#base = 0;
    this.#span = 0.5;
    this.#span = 0;
    this.#inv = 1 / PAGE;
  }
  unmapLeaf(iova) {
    const d = iova - this.#base;
    if (d >= 0 && d < this.#span) {
      const x = d * this.#inv;
      const i = x | 0;
      if (i !== x) return -1;
      const slot = this.#offset + i;
      const c = this.#chunk;
      if (c[slot] === 0) return 0;
      c[slot] = 0;
      this.#delta--;
      return PAGE;
    }
    return this.#miss(iova);
  }
  #miss(iova) {
    if (iova % PAGE !== 0) return -1;
    this.#used[this.#table] += this.#delta;
    this.#delta = 0;
    const page = iova / PAGE;
    const t = Math.floor(page / N) + 3;
    this.#table = t;
    this.#chunk = this.#chunks[t >>> 6];
    this.#offset = (t & 63) * N;
    this.#base = Math.floor(page / N) * N * PAGE;
    this.#span = N * PAGE;
    const slot = this.#offset + (page % N);
    if (this.#chunk[slot] === 0) return 0;
    this.#chunk[slot] = 0;
    this.#delta--;
    return PAGE;
  }
}

class Forwarder {
  #table;
  constructor(table) {
    this.#table = table;
  }
  unmap(iova) {
    return this.#table.unmapLeaf(iova);
  }
}

/** What the issue asks a per-call unmap to fit besides the table work, written as small as it goes. */
class MinimalDomain {
  #table;
  #granule = PAGE;
  #unmaps = 0;
  #holes = 0;
  /** Stands for IotlbHeld: nonzero while the IOTLB holds entries of the domain or someone listens. */
  #held = { busy: 0 };
  constructor(table) {
    this.#table = table;
  }
  unmapFast(iova, size, gather) {
    if (gather.owner !== this) this.#adopt(gather);
    if (size === this.#granule && typeof iova === "number") {
      const unmapped = this.#table.unmapLeaf(iova);
      if (unmapped >= 0) {
        this.#unmaps++;
        if (unmapped === 0) this.#holes++;
        if (this.#held.busy !== 0) this.#rare(iova);
        if (iova < gather.start) gather.start = iova;
        if (iova + size > gather.end) gather.end = iova + size;
        return unmapped;
      }
    }
    throw new Error(`not a single-page unmap: ${iova}, ${size}`);
  }
  #adopt(gather) {
    if (gather.owner !== undefined) throw new Error("the gather holds another domain's unmaps");
    gather.owner = this;
  }
  #rare(iova) {
    throw new Error(`nothing is cached or listening here: ${iova}`);
  }
}

/**
 * The fastest shape of the same duties we could write: one object holds the walk cache and the
 * domain's state; the gather must be the one the object is filling (any other, a hole, a misaligned
 * IOVA, another size or a table change takes the general path); the gather's range is kept as the
 * lowest and highest index cleared in the cached table (small integers) and folded into the gather's
 * IOVAs when the cache moves or at the sync; "the IOTLB holds entries or someone listens" would close
 * the cache window (span 0), so the hit does not test it; one count, of clears. Not dmasim's design
 * (the page table and the domain are separate objects, the IOTLB does not reach into either): a bound.
 */
class FusedDomain {
  #chunks;
  #base = 0;
  #span = 0;
  #inv = 0;
  #chunk;
  #offset = 0;
  #granule = PAGE;
  #clears = 0;
  #gather = undefined;
  #lo = N;
  #hi = 0;
  constructor(chunks) {
    this.#chunks = chunks;
    this.#chunk = chunks[0];
    this.#base = 0.5;
    this.#base = 0;
    this.#span = 0.5;
    this.#span = 0;
    this.#inv = 1 / PAGE;
  }
  unmapFast(iova, size, gather) {
    const d = iova - this.#base;
    if (d >= 0 && d < this.#span && size === this.#granule && gather === this.#gather) {
      const x = d * this.#inv;
      const i = x | 0;
      if (i === x) {
        const slot = this.#offset + i;
        const c = this.#chunk;
        if (c[slot] !== 0) {
          c[slot] = 0;
          this.#clears++;
          if (i < this.#lo) this.#lo = i;
          if (i >= this.#hi) this.#hi = i + 1;
          return PAGE;
        }
      }
    }
    return this.#general(iova, size, gather);
  }
  sync(gather) {
    this.#fold();
    this.#gather = undefined;
    return gather.end - gather.start;
  }
  #fold() {
    const g = this.#gather;
    if (g !== undefined && this.#lo < this.#hi) {
      const start = this.#base + this.#lo * PAGE;
      const end = this.#base + this.#hi * PAGE;
      if (start < g.start) g.start = start;
      if (end > g.end) g.end = end;
    }
    this.#lo = N;
    this.#hi = 0;
  }
  #general(iova, size, gather) {
    if (size !== this.#granule || iova % PAGE !== 0) throw new Error(`not a single-page unmap: ${iova}, ${size}`);
    this.#fold();
    this.#gather = gather;
    const page = iova / PAGE;
    const t = Math.floor(page / N) + 3;
    this.#chunk = this.#chunks[t >>> 6];
    this.#offset = (t & 63) * N;
    this.#base = Math.floor(page / N) * N * PAGE;
    this.#span = N * PAGE;
    const i = page % N;
    const slot = this.#offset + i;
    if (this.#chunk[slot] === 0) return 0;
    this.#chunk[slot] = 0;
    this.#clears++;
    this.#lo = i;
    this.#hi = i + 1;
    return PAGE;
  }
}

class MinimalGather {
  start = Infinity;
  end = 0;
  owner = undefined;
  constructor() {
    this.end = 0.5;
    this.end = 0;
  }
}

function walkCacheLoop(table) {
  let unmapped = 0;
  for (let i = 0; i < PAGES; i++) unmapped += table.unmapLeaf(i * PAGE);
  return unmapped;
}

function forwardedLoop(fwd) {
  let unmapped = 0;
  for (let i = 0; i < PAGES; i++) unmapped += fwd.unmap(i * PAGE);
  return unmapped;
}

function minimalDomainLoop(dom) {
  const gather = new MinimalGather();
  let unmapped = 0;
  for (let i = 0; i < PAGES; i++) unmapped += dom.unmapFast(i * PAGE, PAGE, gather);
  return unmapped;
}

function fusedLoop(dom) {
  const gather = new MinimalGather();
  let unmapped = 0;
  for (let i = 0; i < PAGES; i++) unmapped += dom.unmapFast(i * PAGE, PAGE, gather);
  if (dom.sync(gather) !== PAGES * PAGE) throw new Error("fused: the gathered range is wrong");
  return unmapped;
}

function mappedDomain() {
  const dom = new Iommu(new Trace(), { pgsizeBitmap: SZ_4K }).allocDomain("paging");
  if (dom.map(toIova(0), physAddr(2 ** 32), PAGES * PAGE, RW).mapped !== PAGES * PAGE) throw new Error("map failed");
  return dom;
}

function unmapLeafLoop(pt) {
  let unmapped = 0;
  for (let i = 0; i < PAGES; i++) unmapped += pt.unmapLeaf(i * PAGE, 1, 2 ** 48 - 1);
  return unmapped;
}

function unmapFastLoop(dom) {
  const gather = new IommuIotlbGather();
  let unmapped = 0;
  for (let i = 0; i < PAGES; i++) unmapped += dom[unmapFast](toIova(i * PAGE), PAGE, gather);
  dom[iotlbSync](gather);
  return unmapped;
}

// (module (func (export "f") (param f64) (result i32) (i32.const 4096))), encoded by hand.
const WASM_CONST = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
  0x01, 0x06, 0x01, 0x60, 0x01, 0x7c, 0x01, 0x7f, // type section: (f64) -> i32
  0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
  0x07, 0x05, 0x01, 0x01, 0x66, 0x00, 0x00, // export section: "f" = function 0
  0x0a, 0x07, 0x01, 0x05, 0x00, 0x41, 0x80, 0x20, 0x0b, // code: no locals, i32.const 4096, end
]);
const wasmConst = new WebAssembly.Instance(new WebAssembly.Module(WASM_CONST)).exports.f;

function wasmCallLoop(f) {
  let unmapped = 0;
  for (let i = 0; i < PAGES; i++) unmapped += f(i * PAGE);
  return unmapped;
}

/** Each variant: set up (untimed), then the timed call loop; every loop must unmap 4 GiB. */
const VARIANTS = [
  ["bare clear loop", () => filledChunks(), bareClearLoop],
  ["walk-cache unmap", () => new WalkCacheTable(filledChunks()), walkCacheLoop],
  ["+ one method", () => new Forwarder(new WalkCacheTable(filledChunks())), forwardedLoop],
  ["+ the domain's duties", () => new MinimalDomain(new WalkCacheTable(filledChunks())), minimalDomainLoop],
  ["  fastest shape of those", () => new FusedDomain(filledChunks()), fusedLoop],
  ["dmasim unmapLeaf", () => mappedDomain()[domainPageTable], unmapLeafLoop],
  ["dmasim unmap_fast", () => mappedDomain(), unmapFastLoop],
  ["JS→Wasm call (no work)", () => wasmConst, wasmCallLoop],
];

const only = process.env.FLOOR_ONLY;
const variants = only === undefined ? VARIANTS : VARIANTS.filter(([name]) => name.includes(only));
const radix = buildRadix();
if (radix === undefined) {
  console.log("bench:vs-c:floor skipped: no C compiler found (cc, gcc or clang; or set CC). Nothing was measured.");
  process.exit(0);
}
const ns = variants.map(() => []);
const ratios = variants.map(() => []);
const cNs = [];
console.log(`per-call unmap floors vs C unmap_page (${radix.cc} -O2), ${PAGES} pages, ${rounds} rounds after ${WARMUP} warm-up rounds, CPU time`);
try {
  for (let r = 0; r < WARMUP + rounds; r++) {
    const c = radix.run(PAGES).cpu.unmap / PAGES;
    const row = [];
    variants.forEach(([name, setup, loop], v) => {
      const arg = setup();
      const t0 = cpuNs();
      const unmapped = loop(arg);
      const t = (cpuNs() - t0) / PAGES;
      if (unmapped !== PAGES * PAGE) throw new Error(`${name}: unmapped ${unmapped}, expected ${PAGES * PAGE}`);
      row.push(t);
      if (r >= WARMUP) {
        ns[v].push(t);
        ratios[v].push(t / c);
      }
    });
    if (r >= WARMUP) cNs.push(c);
    console.log(`round ${String(r + 1).padStart(2)}${r < WARMUP ? " (warm-up)" : ""}: C ${c.toFixed(2)} | ${row.map((t) => t.toFixed(2)).join(" | ")} ns`);
  }
} finally {
  radix.dispose();
}
console.log(`median ns per page; median of per-round ratios to C (C: ${median(cNs).toFixed(2)} ns):`);
variants.forEach(([name], v) => {
  console.log(`  ${name.padEnd(24)} ${median(ns[v]).toFixed(2).padStart(6)} ns  ${median(ratios[v]).toFixed(2)}x`);
});
