import { bench, describe } from "vitest";
import { Trace } from "@dmasim/trace";
import { GiB, MiB, PAGE_SIZE, TiB, unsafePhysAddr } from "./addresses.js";
import { PageFlag } from "./page-flags.js";
import { PhysicalMemory } from "./physical-memory.js";
import { SparseStore } from "./sparse-store.js";

// 64 MiB of written RAM inside 4 GiB: big enough to leave the CPU caches, small for a shared machine.
const SPAN = 64 * MiB;
const PAGES = SPAN / PAGE_SIZE;
const mem = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: 4 * GiB }] });
const page = new Uint8Array(PAGE_SIZE).fill(0xa5);
for (let p = 0; p < PAGES; p++) mem.write(unsafePhysAddr(p * PAGE_SIZE), page);
const dst = new Uint8Array(PAGE_SIZE);
const raw = new Uint8Array(64 * PAGE_SIZE).fill(0x5a);
// Every page once in a scattered order that defeats the prefetcher: stride by a prime (coprime to PAGES).
const order = new Uint32Array(PAGES);
for (let i = 0; i < PAGES; i++) order[i] = (i * 7919) % PAGES;
let seq = 0;
let rnd = 0;
let cold = 0;

describe("4 KiB CPU accesses (PhysicalMemory)", () => {
  bench("readInto 4 KiB, materialised, sequential", () => {
    mem.readInto(unsafePhysAddr(seq * PAGE_SIZE), dst);
    seq = (seq + 1) % PAGES;
  });
  bench("readInto 4 KiB, materialised, scattered pages", () => {
    mem.readInto(unsafePhysAddr((order[rnd] ?? 0) * PAGE_SIZE), dst);
    rnd = (rnd + 1) % PAGES;
  });
  bench("readInto 4 KiB, never written (zeros)", () => {
    mem.readInto(unsafePhysAddr(SPAN + cold * PAGE_SIZE), dst);
    cold = (cold + 1) % PAGES;
  });
  bench("write 4 KiB, materialised, sequential", () => {
    mem.write(unsafePhysAddr(seq * PAGE_SIZE), page);
    seq = (seq + 1) % PAGES;
  });
  bench("readInto 4 KiB, materialised, 256 KiB set (cache-resident)", () => {
    mem.readInto(unsafePhysAddr((seq % 64) * PAGE_SIZE), dst);
    seq = (seq + 1) % PAGES;
  });
  bench("baseline: Uint8Array.set of 4 KiB from a 256 KiB buffer (no model)", () => {
    const off = (seq % 64) * PAGE_SIZE;
    dst.set(raw.subarray(off, off + PAGE_SIZE));
    seq = (seq + 1) % PAGES;
  });
  bench("read 4 KiB (allocates the result), materialised", () => {
    mem.read(unsafePhysAddr(seq * PAGE_SIZE), PAGE_SIZE);
    seq = (seq + 1) % PAGES;
  });
});

describe("first writes (materialising pages)", () => {
  bench("write 256 x 4 KiB into a fresh 1 MiB SparseStore", () => {
    const s = new SparseStore(MiB);
    for (let p = 0; p < 256; p++) s.write(p * PAGE_SIZE, page);
  });
  const small = page.subarray(0, 64);
  bench("write 64 B into each of 256 pages of a fresh 1 MiB SparseStore (64-byte lines)", () => {
    const s = new SparseStore(MiB);
    for (let p = 0; p < 256; p++) s.write(p * PAGE_SIZE, small);
  });
});

describe("page allocator", () => {
  const a = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: 16 * GiB }] }).allocator;
  // 1000 live single pages with holes between them: first fit has to walk past fragments.
  const frag = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: 16 * GiB }] }).allocator;
  const held: number[] = [];
  for (let i = 0; i < 2000; i++) held.push(frag.allocPages(1));
  for (let i = 0; i < 2000; i += 2) frag.freePages(unsafePhysAddr(held[i] ?? 0), 1);

  bench("allocPages(1) + freePages", () => {
    a.freePages(a.allocPages(1), 1);
  });
  bench("allocPages(512, align 512) + freePages (2 MiB)", () => {
    a.freePages(a.allocPages(512, { align: 512 }), 512);
  });
  bench("allocPages(16384, below 4 GiB) + freePages (64 MiB swiotlb pool)", () => {
    a.freePages(a.allocPages(16384, { below: 4 * GiB }), 16384);
  });
  bench("allocPages(2) + freePages past 1000 one-page holes", () => {
    frag.freePages(frag.allocPages(2), 2);
  });
});

describe("page descriptors", () => {
  const m = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: 4 * GiB }], confidential: true });
  m.pages.setFlags(0, 65536, PageFlag.SLAB);
  let pfn = 0;
  bench("flags(pfn), materialised sections", () => {
    m.pages.flags(pfn);
    pfn = (pfn + 1) % 65536;
  });
  bench("flags(pfn), untouched sections (range default)", () => {
    m.pages.flags(65536 + pfn);
    pfn = (pfn + 1) % 65536;
  });
});

describe("construction", () => {
  // The Trace is built once: its event ring is not part of what memory costs.
  const trace = new Trace();
  bench("new PhysicalMemory with 1 GiB of RAM", () => {
    new PhysicalMemory(trace, { ram: [{ base: 0, size: GiB }] });
  });
  bench("new PhysicalMemory with 1 TiB of RAM", () => {
    new PhysicalMemory(trace, { ram: [{ base: 0, size: TiB }] });
  });
  bench("new PhysicalMemory with 1 TiB of RAM, confidential, 4 reserved ranges", () => {
    new PhysicalMemory(trace, {
      ram: [{ base: 0, size: TiB }],
      confidential: true,
      reserved: [0, 1, 2, 3].map((i) => ({ base: i * GiB, size: MiB })),
    });
  });
});
