import { Trace } from "@dmasim/trace";
import { Counter } from "./counters.js";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { counterValues } from "@dmasim/trace/internal";
import { mapGranuleNoPhysProtCheck } from "./internal.js";
import { MAX_PHYS } from "./domain.js";
import { Iommu } from "./iommu.js";
import { SZ_2M, SZ_4K, iova, unsafeIova } from "./iova.js";
import { IommuProt } from "./prot.js";
import { physAddr, unsafePhysAddr } from "@dmasim/memory";

// IommuDomain.mapGranuleNoPhysProtCheck is the DMA layer's internal single-granule entry: it trusts phys (a safe
// integer >= 0 aligned to the granule) and prot (valid, with READ and/or WRITE) and checks the rest.
// Its contract: a count >= 0 (tables allocated) means it did exactly what map of that granule does; -1 means it changed
// nothing, and the caller's fallback to map then gives map's own outcome. So "trusted, else map" must be
// indistinguishable from map alone: same outcomes, page table, counters, events and sizes.

type Op =
  | { kind: "map"; iova: number; phys: number; prot: number }
  | { kind: "unmap"; iova: number; size: number };

const G = SZ_4K;
// IOVAs around a few leaf tables and the top of a 39-bit space: aligned or not, free or taken, inside
// or beyond the aperture, and some values no caller should pass (negative, fractional, not a number).
const iovaArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 600 }).map((i) => i * G) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 4 }).map((i) => 2 ** 39 - (i + 1) * G) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 600 * G }) },
  { weight: 1, arbitrary: fc.constantFrom(-G, 0.5, 2 ** 39, 2 ** 53, Number.NaN, Infinity) },
);
// What the DMA layer guarantees: aligned safe integers (some past the 52-bit physical limit) and a
// valid protection.
const physArb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 2 ** 20 }).map((p) => p * G) },
  { weight: 1, arbitrary: fc.constantFrom(MAX_PHYS - G, MAX_PHYS, 2 ** 53 - G) },
);
const protArb = fc
  .tuple(fc.constantFrom(IommuProt.READ, IommuProt.WRITE, IommuProt.READ | IommuProt.WRITE), fc.subarray([IommuProt.CACHE, IommuProt.MMIO, IommuProt.PRIV]))
  .map(([rw, extra]) => extra.reduce((a, b) => a | b, rw));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("map" as const), iova: iovaArb, phys: physArb, prot: protArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("unmap" as const), iova: fc.integer({ min: 0, max: 600 }).map((i) => i * G), size: fc.constantFrom(G, 64 * G, SZ_2M) }) },
);

function run(ops: readonly Op[], trusted: boolean, listen: boolean, requiresSyncMap: boolean) {
  const trace = new Trace();
  const events: unknown[] = [];
  if (listen) trace.events.subscribe((e) => events.push(e));
  const dom = new Iommu(trace, { vaBits: 39, requiresSyncMap }).allocDomain("paging");
  const outcomes = ops.map((op) => {
    try {
      if (op.kind === "unmap") {
        const { unmapped, freed } = dom.unmap(iova(op.iova), op.size);
        dom.releasePtPages(freed);
        return { unmapped };
      }
      if (trusted && dom[mapGranuleNoPhysProtCheck](op.iova, op.phys, op.prot) >= 0) return { mapped: G };
      return { mapped: dom.map(iova(op.iova), physAddr(op.phys), G, op.prot).mapped };
    } catch (e) {
      return { error: `${(e as Error).name}: ${(e as Error).message}` };
    }
  });
  const table: (number | undefined)[] = [];
  for (let i = 0; i < 601; i++) table.push(dom.iovaToPhys(iova(i * G)));
  for (let i = 1; i <= 5; i++) table.push(dom.iovaToPhys(iova(2 ** 39 - i * G)));
  return {
    outcomes,
    table,
    mappedBytes: dom.mappedBytes,
    ptPages: dom.ptPages,
    counters: trace.counters.snapshot().nonZero(),
    events,
  };
}

/**
 * What the ops must leave, worked out without the domain (map shares its single-granule path with
 * mapGranuleNoPhysProtCheck, so comparing the two alone would not see a fault common to both): which IOVAs map
 * where, and how many map calls succeeded.
 */
function model(ops: readonly Op[]): { table: (number | undefined)[]; mapped: number; maps: number } {
  const m = new Map<number, number>();
  let maps = 0;
  for (const op of ops) {
    if (op.kind === "unmap") {
      for (const k of [...m.keys()]) if (k >= op.iova && k < op.iova + op.size) m.delete(k);
      continue;
    }
    const ok = Number.isSafeInteger(op.iova) && op.iova >= 0 && op.iova % G === 0 && op.iova + G <= 2 ** 39 && op.phys + G <= MAX_PHYS && !m.has(op.iova);
    if (ok) {
      m.set(op.iova, op.phys);
      maps++;
    }
  }
  const table: (number | undefined)[] = [];
  for (let i = 0; i < 601; i++) table.push(m.get(i * G));
  for (let i = 1; i <= 5; i++) table.push(m.get(2 ** 39 - i * G));
  return { table, mapped: m.size * G, maps };
}

describe("mapGranuleNoPhysProtCheck (internal entry for the DMA layer's link)", () => {
  it("trusted-else-map is indistinguishable from map alone, and both do what the model says", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), fc.boolean(), fc.boolean(), (ops, listen, requiresSyncMap) => {
        const fast = run(ops, true, listen, requiresSyncMap);
        expect(fast).toEqual(run(ops, false, listen, requiresSyncMap));
        const want = model(ops);
        expect(fast.table).toEqual(want.table);
        expect(fast.mappedBytes).toBe(want.mapped);
        expect(fast.counters.IommuMapCalls ?? 0).toBe(want.maps);
        expect(fast.counters.PteWrites ?? 0).toBe(want.maps);
        if (listen) expect(fast.events.filter((e) => (e as { type: string }).type === "iommu.map")).toHaveLength(want.maps);
      }),
      { numRuns: 150 },
    );
  });

  it("maps a free aligned granule and declines, changing nothing, what map would refuse", () => {
    const trace = new Trace();
    const dom = new Iommu(trace, { vaBits: 39 }).allocDomain("paging");
    const rw = IommuProt.READ | IommuProt.WRITE;
    expect(dom[mapGranuleNoPhysProtCheck](5 * G, 7 * G, rw)).toBe(2); // a level-2 and a level-1 table under the root
    expect(dom.iovaToPhys(iova(5 * G + 12))).toBe(7 * G + 12);
    const before = trace.counters.snapshot();
    expect(dom[mapGranuleNoPhysProtCheck](5 * G, 9 * G, rw)).toBe(-1); // occupied
    expect(dom[mapGranuleNoPhysProtCheck](5 * G + 1, 9 * G, rw)).toBe(-1); // unaligned IOVA
    expect(dom[mapGranuleNoPhysProtCheck](2 ** 39, 9 * G, rw)).toBe(-1); // beyond the aperture
    expect(dom[mapGranuleNoPhysProtCheck](6 * G, MAX_PHYS, rw)).toBe(-1); // beyond 52-bit physical space
    expect(trace.counters.snapshot().diff(before).nonZero()).toEqual({});
    expect(dom.iovaToPhys(iova(5 * G))).toBe(7 * G);
    expect(dom.mappedBytes).toBe(G);
    expect(() => dom.map(unsafeIova(5 * G), unsafePhysAddr(9 * G), G, rw)).toThrow(/overlaps an existing mapping/);
  });

  it("defers its accounting to the next read, and settles it when the domain is freed", () => {
    const trace = new Trace();
    const iommu = new Iommu(trace, { vaBits: 39 });
    const dom = iommu.allocDomain("paging");
    const rw = IommuProt.READ | IommuProt.WRITE;
    for (let i = 0; i < 5; i++) expect(dom[mapGranuleNoPhysProtCheck]((16 + i) * G, (40 + i) * G, rw)).toBeGreaterThanOrEqual(0);
    expect(trace.counters[counterValues][Counter.PteWrites]).toBe(0); // not yet added
    expect(dom.mappedBytes).toBe(5 * G);
    expect(trace.counters.get(Counter.IommuMapCalls)).toBe(5);
    expect(dom[mapGranuleNoPhysProtCheck](21 * G, 45 * G, rw)).toBe(0);
    dom.unmap(iova(16 * G), 6 * G);
    iommu.freeDomain(dom);
    expect(trace.counters.snapshot().nonZero()).toMatchObject({ IommuMapCalls: 6, PteWrites: 6, PteClears: 6 });
    expect(dom.mappedBytes).toBe(0);
  });
});
