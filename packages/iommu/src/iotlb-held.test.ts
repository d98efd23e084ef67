// The single-granule unmaps skip the IOTLB when the domain's "holds entries" flag, kept by the IOTLB, is
// clear. A flag left clear while the IOTLB holds an entry of the domain would leave that entry fresh
// after the unmap (no stale hit counted, the device reaching the old page unnoticed). These tests run
// the same sequences with a listener subscribed, which sends every unmap down the full path, and
// compare the counters and translations.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { physAddr } from "@dmasim/memory";
import { Trace } from "@dmasim/trace";
import { Counter } from "./counters.js";
import { Iommu } from "./iommu.js";
import { IommuIotlbGather, iotlbSync, unmapFast } from "./internal.js";
import { SZ_4K, iova } from "./iova.js";
import { IommuProt } from "./prot.js";
import type { TraceEvent } from "./events.js";

const RW = IommuProt.READ | IommuProt.WRITE;
// Few pages, so that a sequence often touches, unmaps and touches again the same page.
const PAGES = 4;

type Op =
  | { kind: "touch"; dom: 0 | 1; page: number }
  | { kind: "unmap"; dom: 0 | 1; page: number; fast: boolean }
  | { kind: "remap"; dom: 0 | 1; page: number }
  | { kind: "invalidate"; dom: 0 | 1; page: number }
  | { kind: "invalidateAll"; dom: 0 | 1 }
  | { kind: "flushAll" };

const domArb = fc.constantFrom<0 | 1>(0, 1);
const pageArb = fc.integer({ min: 0, max: PAGES - 1 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("touch" as const), dom: domArb, page: pageArb }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("unmap" as const), dom: domArb, page: pageArb, fast: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("remap" as const), dom: domArb, page: pageArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("invalidate" as const), dom: domArb, page: pageArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("invalidateAll" as const), dom: domArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("flushAll" as const) }) },
);

/** Two domains on one unit with a tiny IOTLB (evictions across domains), each page mapped; runs `ops`. */
function run(ops: Op[], listen: boolean) {
  const trace = new Trace<TraceEvent>();
  if (listen) trace.events.subscribe(() => undefined);
  const mmu = new Iommu(trace, { iotlbEntries: 4, iotlbWays: 2 });
  const doms = [mmu.allocDomain("paging"), mmu.allocDomain("paging")] as const;
  const devs = ["0000:01:00.0", "0000:02:00.0"] as const;
  doms.forEach((d, i) => {
    mmu.attachDevice(devs[i] ?? "", d);
    d.map(iova(0), physAddr((i + 1) * 2 ** 32), PAGES * SZ_4K, RW);
  });
  const gather = new IommuIotlbGather();
  const seen: number[] = [];
  for (const op of ops) {
    if (op.kind === "flushAll") {
      mmu.flushIotlbAll();
      continue;
    }
    const d = doms[op.dom];
    const at = iova(("page" in op ? op.page : 0) * SZ_4K);
    if (op.kind === "touch") seen.push(mmu.translate(devs[op.dom], at, 8, "read"));
    else if (op.kind === "unmap") {
      if (op.fast) {
        seen.push(d[unmapFast](at, SZ_4K, gather));
        // Synced at once, but only its own range: entries elsewhere stay, so the flag stays set.
        d[iotlbSync](gather);
      } else seen.push(d.unmap(at, SZ_4K).unmapped);
    } else if (op.kind === "remap") {
      if (d.iovaToPhys(at) === undefined) d.map(at, physAddr(2 ** 40 + op.page * SZ_4K), SZ_4K, RW);
    } else if (op.kind === "invalidate") d.invalidateRange(at, SZ_4K);
    else d.invalidateAll();
  }
  return { seen, counters: trace.counters.snapshot().nonZero() };
}

describe("the IOTLB's per-domain 'holds entries' flag", () => {
  it("folds in listeners that come and go after the domain was made: a quiet unmap emits exactly while one listens", () => {
    const trace = new Trace<TraceEvent>();
    const d = new Iommu(trace).allocDomain("paging");
    d.map(iova(0), physAddr(2 ** 32), 8 * SZ_4K, RW);
    const gather = new IommuIotlbGather();
    const got: number[] = [];
    d[unmapFast](iova(0), SZ_4K, gather);
    const off = trace.events.subscribe((e) => {
      if (e.type === "iommu.unmap") got.push(e.iova);
    });
    d[unmapFast](iova(SZ_4K), SZ_4K, gather);
    d.unmap(iova(2 * SZ_4K), SZ_4K);
    off();
    d[unmapFast](iova(3 * SZ_4K), SZ_4K, gather);
    trace.events.setRecording(true);
    d.unmap(iova(4 * SZ_4K), SZ_4K);
    trace.events.setRecording(false);
    d.unmap(iova(5 * SZ_4K), SZ_4K);
    d[iotlbSync](gather);
    const recorded = trace.events.events("iommu.unmap").map((e) => e.iova);
    expect([got, recorded]).toEqual([[SZ_4K, 2 * SZ_4K], [4 * SZ_4K]]);
  });

  it("marks a cached translation stale on a quiet single-page unmap, after refills, evictions and flushes", () => {
    const trace = new Trace<TraceEvent>();
    const mmu = new Iommu(trace, { iotlbEntries: 1, iotlbWays: 1 });
    const a = mmu.allocDomain("paging");
    const b = mmu.allocDomain("paging");
    mmu.attachDevice("0000:01:00.0", a);
    mmu.attachDevice("0000:02:00.0", b);
    a.map(iova(0), physAddr(2 ** 32), 4 * SZ_4K, RW);
    b.map(iova(0), physAddr(2 ** 33), 4 * SZ_4K, RW);
    const stale = () => trace.counters.get(Counter.IotlbStaleHits);
    // Filled, then unmapped with nobody listening: the entry must be marked, so the next access is a stale hit.
    mmu.translate("0000:01:00.0", iova(0), 8, "read");
    a.unmap(iova(0), SZ_4K);
    expect(mmu.translate("0000:01:00.0", iova(0), 8, "read")).toBe(2 ** 32);
    expect(stale()).toBe(1);
    // b's fill evicts a's only entry (a's flag clears); a's next fill must set it again.
    mmu.translate("0000:02:00.0", iova(0), 8, "read");
    mmu.translate("0000:01:00.0", iova(SZ_4K), 8, "read");
    a.unmap(iova(SZ_4K), SZ_4K);
    expect(mmu.translate("0000:01:00.0", iova(SZ_4K), 8, "read")).toBe(2 ** 32 + SZ_4K);
    expect(stale()).toBe(2);
    // A global flush clears every flag; the next fill sets a's again (here through unmap_fast).
    mmu.flushIotlbAll();
    mmu.translate("0000:01:00.0", iova(2 * SZ_4K), 8, "read");
    const gather = new IommuIotlbGather();
    expect(a[unmapFast](iova(2 * SZ_4K), SZ_4K, gather)).toBe(SZ_4K);
    expect(mmu.translate("0000:01:00.0", iova(2 * SZ_4K), 8, "read")).toBe(2 ** 32 + 2 * SZ_4K);
    expect(stale()).toBe(3);
    a[iotlbSync](gather);
    // Synced: the entry is gone and the access faults.
    expect(mmu.translate("0000:01:00.0", iova(2 * SZ_4K), 8, "read")).toBe(-1);
  });

  it("gives the same translations and counters as the full path, for any sequence (fast-check)", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
        const quiet = run(ops, false);
        const listened = run(ops, true);
        expect(quiet.seen).toEqual(listened.seen);
        expect(quiet.counters).toEqual(listened.counters);
      }),
      { numRuns: 300 },
    );
  });

  it("leaves a freed domain's flag set: a single-page unmap after the free still emits to a later listener", () => {
    const trace = new Trace<TraceEvent>();
    const mmu = new Iommu(trace);
    const d = mmu.allocDomain("paging");
    d.map(iova(0), physAddr(2 ** 32), 2 * SZ_4K, RW);
    mmu.freeDomain(d);
    // Nobody listened at the free; someone does now. The IOTLB no longer keeps the freed domain's flag.
    const seen: string[] = [];
    const off = trace.events.subscribe((e) => {
      if (e.type === "iommu.unmap") seen.push(e.type);
    });
    expect(d.unmap(iova(0), SZ_4K).unmapped).toBe(SZ_4K);
    const gather = new IommuIotlbGather();
    expect(d[unmapFast](iova(SZ_4K), SZ_4K, gather)).toBe(SZ_4K);
    off();
    expect(seen).toEqual(["iommu.unmap", "iommu.unmap"]);
  });
});

