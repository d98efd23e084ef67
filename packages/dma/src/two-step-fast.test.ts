import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { GiB, unsafePhysAddr } from "@dmasim/memory";
import {
  DMA_ATTR_MMIO,
  DMA_ATTR_NO_WARN,
  DMA_ATTR_PRIVILEGED,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_ATTR_WEAK_ORDERING,
  DmaIovaState,
  dmaIovaLink,
  dmaIovaSync,
  dmaIovaTryAlloc,
} from "./index.js";
import type { DebugMode, DmaDirection, IommuMode } from "./index.js";
import { __dmaIovaLink, dmaIovaLinkChecked } from "./two-step.js";
import { dmaIovaLinkAlignedGranuleNoBounceCheck } from "./two-step-fast.js";
import { makeKernel, TRUSTED_BDF, tryDmaRead, UNTRUSTED_BDF } from "./test-fixtures.js";
import { checkAttrs, checkDir, checkRange, checkSize, isAttrs, isDir, isIndex, isRange } from "./validate.js";
import { iova } from "@dmasim/iommu";

// dmaIovaLink answers the common call (a coherent device linking one granule of an aligned buffer) by
// the fast path of two-step-fast.ts. These properties run the same calls through dmaIovaLink and through
// dmaIovaLinkChecked (every check, the kernel's flow) on two identical platforms and require the same
// results, errors, counters, dma-debug findings, kernel log, page tables, what the device reads and,
// when someone listens, the same events (which carry each PTE's protection): the fast path must be
// invisible except in time.

const G = 4096;
const GRANULES = 16;

interface LinkCall {
  readonly page: number;
  readonly physPad: number;
  readonly offsetGranules: number;
  readonly offsetPad: number;
  readonly sizeGranules: number;
  readonly sizePad: number;
  readonly dir: number;
  readonly attrs: number;
}

const linkCall: fc.Arbitrary<LinkCall> = fc.record({
  page: fc.integer({ min: 0, max: GRANULES - 1 }),
  // Mostly aligned (the fast path's case), sometimes not (the checked path's).
  physPad: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: G - 1 }) }),
  offsetGranules: fc.integer({ min: 0, max: GRANULES }),
  offsetPad: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: G - 1 }) }),
  sizeGranules: fc.integer({ min: 0, max: 4 }),
  sizePad: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: G - 1 }) }),
  dir: fc.constantFrom(0, 1, 2, 3, 4, 1.5),
  attrs: fc.constantFrom(
    0,
    DMA_ATTR_PRIVILEGED,
    DMA_ATTR_SKIP_CPU_SYNC,
    DMA_ATTR_NO_WARN | DMA_ATTR_WEAK_ORDERING,
    DMA_ATTR_MMIO,
    DMA_ATTR_REQUIRE_COHERENT,
    1 << 20,
    -1,
  ),
});

type Outcome = { ret: number } | { error: string };

/** FNV-1a of the bytes: comparing digests keeps each property run fast. */
function digest(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

function run(
  link: typeof dmaIovaLink,
  setup: { mode: IommuMode; debug: DebugMode; coherent: boolean; untrusted: boolean; listen: boolean },
  calls: readonly LinkCall[],
) {
  const bdf = setup.untrusted ? UNTRUSTED_BDF : TRUSTED_BDF;
  const fx = makeKernel({ ramBytes: 1 * GiB, iommuMode: setup.mode, debug: setup.debug, devices: { [bdf]: { coherent: setup.coherent } } });
  const dev = fx.kernel.device(bdf);
  const base = fx.platform.memory.allocator.allocPages(GRANULES + 1);
  const state = new DmaIovaState();
  const allocated = dmaIovaTryAlloc(dev, state, base, GRANULES * G);
  const events: unknown[] = [];
  if (setup.listen) fx.platform.trace.events.subscribe((e) => events.push(e));
  const outcomes: Outcome[] = calls.map((c) => {
    try {
      const phys = base + c.page * G + c.physPad;
      return { ret: link(dev, state, unsafePhysAddr(phys), c.offsetGranules * G + c.offsetPad, c.sizeGranules * G + c.sizePad, c.dir as DmaDirection, c.attrs) };
    } catch (e) {
      return { error: `${(e as Error).name}: ${(e as Error).message}` };
    }
  });
  const domain = dev.domain;
  const table: (number | undefined)[] = [];
  for (let g = -1; g <= GRANULES + 1; g++) table.push(domain?.iovaToPhys(iova(state.addr - (state.addr % G) + g * G)));
  // What the device reads through each granule once the links are synced: a digest of the bytes, or the fault.
  const view: (number | string)[] = [];
  if (allocated) {
    dmaIovaSync(dev, state, 0, GRANULES * G);
    const start = state.addr - (state.addr % G);
    for (let g = 0; g < GRANULES; g++) {
      const got = tryDmaRead(fx.endpoint(dev), start + g * G, G);
      view.push(got instanceof Error ? got.name : digest(got));
    }
  }
  return {
    allocated,
    outcomes,
    table,
    view,
    useSwiotlb: state.useSwiotlb,
    events,
    counters: fx.platform.trace.counters.snapshot().nonZero(),
    reports: fx.kernel.debugReports().map((r) => `${r.check}: ${r.message}`),
    dmesg: fx.kernel.dmesg().map((l) => l.message),
  };
}

describe("dmaIovaLinkGranuleNoChecks (the fast path behind dmaIovaLink)", () => {
  it("gives the checked path's results, errors, counters, reports, log, page table and device view", () => {
    fc.assert(
      fc.property(
        fc.constantFrom<IommuMode>("strict", "lazy"),
        fc.constantFrom<DebugMode>("off", "collect", "throw"),
        fc.boolean(),
        fc.boolean(),
        fc.boolean(),
        fc.array(linkCall, { minLength: 1, maxLength: 8 }),
        (mode, debug, coherent, untrusted, listen, calls) => {
          const setup = { mode, debug, coherent, untrusted, listen };
          expect(run(dmaIovaLink, setup, calls)).toEqual(run(dmaIovaLinkChecked, setup, calls));
        },
      ),
      { numRuns: 60 },
    );
  });

  it("maps what the checked path maps for the common call (coherent, aligned, one granule each)", () => {
    const setup = { mode: "strict" as const, debug: "off" as const, coherent: true, untrusted: false, listen: true };
    const calls: LinkCall[] = Array.from({ length: GRANULES }, (_, i) => ({
      page: i,
      physPad: 0,
      offsetGranules: i,
      offsetPad: 0,
      sizeGranules: 1,
      sizePad: 0,
      dir: 1,
      attrs: 0,
    }));
    const fast = run(dmaIovaLink, setup, calls);
    expect(fast.outcomes.every((o) => "ret" in o && o.ret === 0)).toBe(true);
    expect(fast.table.filter((p) => p !== undefined)).toHaveLength(GRANULES);
    expect(fast.events.filter((e) => (e as { type: string }).type === "iommu.map")).toHaveLength(GRANULES);
    expect(fast).toEqual(run(dmaIovaLinkChecked, setup, calls));
  });
});

describe("the cheap argument predicates", () => {
  const anyNumber = fc.oneof(
    fc.integer({ min: -5, max: 2 ** 14 }),
    fc.constantFrom(0, -0, 0.5, NaN, Infinity, -Infinity, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 32 + 2, 2 ** 53 - 1, 2 ** 53, 2 ** 60),
    fc.double(),
  );
  const passes = (fn: () => void): boolean => {
    try {
      fn();
      return true;
    } catch {
      return false;
    }
  };

  it("admit only what the precise checks accept (isIndex and isDir: exactly that)", () => {
    fc.assert(
      fc.property(anyNumber, anyNumber, (a, b) => {
        expect(isIndex(a)).toBe(passes(() => { checkSize("f", "v", a); }));
        if (isRange(a, b)) expect(passes(() => { checkRange("f", "a", a, b); })).toBe(true);
        if (isAttrs(a)) expect(passes(() => { checkAttrs("f", a); })).toBe(true);
        expect(isDir(a)).toBe(passes(() => { checkDir("f", a); }));
      }),
      { numRuns: 2000 },
    );
  });

  it("admit the common calls", () => {
    expect(isRange(0x1000, 4096)).toBe(true);
    expect(isRange(2 ** 40, 2 ** 20)).toBe(true);
    expect(isAttrs(DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_PRIVILEGED)).toBe(true);
    expect(isAttrs(1 << 3)).toBe(false); // an undefined bit
  });
});

describe("dmaIovaLinkAlignedGranuleNoBounceCheck (the checked link's PTE write for one aligned granule)", () => {
  // Where it answers 0 or an errno it must have done what __dma_iova_link does; where it answers 1 it
  // must have changed nothing (the caller then runs __dma_iova_link itself).
  function twin(coherent: boolean, untrusted: boolean) {
    const bdf = untrusted ? UNTRUSTED_BDF : TRUSTED_BDF;
    const fx = makeKernel({ ramBytes: 1 * GiB, debug: "off", devices: { [bdf]: { coherent } } });
    const dev = fx.kernel.device(bdf);
    const base = fx.platform.memory.allocator.allocPages(GRANULES + 1);
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, state, base, GRANULES * G)).toBe(true);
    // The events carry each PTE's protection, which the page table's iovaToPhys does not show.
    const events: unknown[] = [];
    fx.platform.trace.events.subscribe((e) => events.push(e));
    return { fx, dev, base, iova: state.addr, events };
  }
  const call = fc.record({
    granule: fc.integer({ min: 0, max: GRANULES - 1 }),
    iovaPad: fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: G - 1 }) }),
    page: fc.integer({ min: 0, max: GRANULES - 1 }),
    physPad: fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: G - 1 }) }),
    size: fc.constantFrom(G, G, G, 2 * G, G / 2),
    // Valid mapping directions: the checked link's callers pass nothing else with a non-coherent device
    // (cache maintenance refuses DMA_NONE).
    dir: fc.constantFrom(0, 1, 2),
    attrs: fc.constantFrom(0, DMA_ATTR_PRIVILEGED, DMA_ATTR_SKIP_CPU_SYNC, DMA_ATTR_MMIO, DMA_ATTR_NO_WARN | DMA_ATTR_WEAK_ORDERING),
  });

  it("writes what __dma_iova_link writes, or changes nothing and answers 1", () => {
    fc.assert(
      fc.property(fc.boolean(), fc.boolean(), fc.array(call, { minLength: 1, maxLength: 10 }), (coherent, untrusted, calls) => {
        const a = twin(coherent, untrusted);
        const b = twin(coherent, untrusted);
        for (const c of calls) {
          const args = (t: typeof a) => [t.dev, t.iova + c.granule * G + c.iovaPad, t.base + c.page * G + c.physPad, c.size, c.dir as DmaDirection, c.attrs] as const;
          const before = a.fx.platform.trace.counters.snapshot().nonZero();
          const fast = dmaIovaLinkAlignedGranuleNoBounceCheck(...args(a));
          if (fast === 1) expect(a.fx.platform.trace.counters.snapshot().nonZero()).toEqual(before);
          const slow = fast === 1 ? __dmaIovaLink(...args(a)) : fast;
          expect(slow).toBe(__dmaIovaLink(...args(b)));
        }
        const table = (t: typeof a) => Array.from({ length: GRANULES + 2 }, (_, g) => t.dev.domain?.iovaToPhys(iova(t.iova + g * G)));
        expect(table(a)).toEqual(table(b));
        expect(a.fx.platform.trace.counters.snapshot().nonZero()).toEqual(b.fx.platform.trace.counters.snapshot().nonZero());
        expect(a.fx.kernel.dmesg().map((l) => l.message)).toEqual(b.fx.kernel.dmesg().map((l) => l.message));
        expect(a.events).toEqual(b.events);
      }),
      { numRuns: 80 },
    );
  });
});
