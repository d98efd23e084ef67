import type { TraceEvent } from "./events.js";
import { Counter } from "./counters.js";
import { describe, expect, it } from "vitest";
import { IommuError } from "./errors.js";
import { SZ_1G, SZ_2M, SZ_4K, iova, unsafeIova } from "./iova.js";
import { IommuProt } from "./prot.js";
import { setup, OTHER_BDF } from "./test-fixtures.js";
import { physAddr } from "@dmasim/memory";

const RW = IommuProt.READ | IommuProt.WRITE;

describe("Iommu.translate", () => {
  it("walks on a miss, fills the IOTLB, then hits", () => {
    const { mmu, dom, dev, trace } = setup();
    dom.map(iova(0x7000), physAddr(0x1_2345_6000), SZ_4K, RW);
    expect(mmu.translate(dev, iova(0x7010), 16, "read")).toBe(0x1_2345_6010);
    expect(trace.counters.get(Counter.IotlbMisses)).toBe(1);
    expect(trace.counters.get(Counter.PtWalks)).toBe(1);
    expect(trace.counters.get(Counter.PtWalkLevels)).toBe(4);
    expect(mmu.iotlb.size).toBe(1);
    expect(mmu.translate(dev, iova(0x7ff0), 16, "write")).toBe(0x1_2345_6ff0);
    expect(trace.counters.get(Counter.IotlbHits)).toBe(1);
    expect(trace.counters.get(Counter.PtWalks)).toBe(1);
  });

  it("one IOTLB entry covers a whole 2 MiB leaf", () => {
    const { mmu, dom, dev, trace } = setup();
    dom.map(iova(SZ_2M), physAddr(4 * SZ_2M), SZ_2M, RW);
    expect(mmu.translate(dev, iova(SZ_2M), 8, "read")).toBe(4 * SZ_2M);
    expect(trace.counters.get(Counter.PtWalkLevels)).toBe(3);
    expect(mmu.translate(dev, iova(SZ_2M + 0x1f_f000), 8, "read")).toBe(4 * SZ_2M + 0x1f_f000);
    expect(trace.counters.get(Counter.IotlbHits)).toBe(1);
    expect(mmu.iotlb.size).toBe(1);
  });

  it("records faults with reason: not-mapped, permission, blocked", () => {
    const { mmu, dom, dev, trace } = setup();
    trace.clock.advance(100);
    dom.map(iova(0), physAddr(0x10_0000), SZ_4K, IommuProt.READ);
    expect(mmu.translate(dev, iova(SZ_4K), 4, "read")).toBe(-1);
    expect(mmu.translate(dev, iova(0), 4, "write")).toBe(-1);
    // The permission comes from the IOTLB entry on a hit too.
    expect(mmu.translate(dev, iova(0), 4, "read")).toBe(0x10_0000);
    expect(mmu.translate(dev, iova(0), 4, "write")).toBe(-1);
    expect(mmu.translate(OTHER_BDF, iova(0), 4, "read")).toBe(-1);
    expect(mmu.faults()).toEqual([
      { t: 100, device: dev, iova: SZ_4K, access: "read", reason: "not-mapped" },
      { t: 100, device: dev, iova: 0, access: "write", reason: "permission" },
      { t: 100, device: dev, iova: 0, access: "write", reason: "permission" },
      { t: 100, device: OTHER_BDF, iova: 0, access: "read", reason: "blocked" },
    ]);
    expect(trace.counters.get(Counter.IommuFaults)).toBe(4);
    mmu.clearFaults();
    expect(mmu.faults()).toEqual([]);
  });

  it("identity passes addresses through; blocked and detached devices fault", () => {
    const { mmu, dev } = setup();
    mmu.attachDevice(dev, mmu.allocDomain("identity"));
    expect(mmu.translate(dev, iova(0xdead_b000), 4, "write")).toBe(0xdead_b000);
    mmu.attachDevice(dev, mmu.allocDomain("blocked"));
    expect(mmu.translate(dev, iova(0), 4, "read")).toBe(-1);
    mmu.detachDevice(dev);
    expect(mmu.domainOf(dev)).toBeUndefined();
    expect(mmu.translate(dev, iova(0), 4, "read")).toBe(-1);
    expect(mmu.faults().map((f) => f.reason)).toEqual(["blocked", "blocked"]);
    expect(() => {
      mmu.detachDevice(dev);
    }).toThrow(/ENOENT/);
  });

  it("rejects an access that crosses a 4 KiB boundary or is empty", () => {
    const { mmu, dev, trace } = setup();
    expect(() => mmu.translate(dev, iova(0xff8), 16, "read")).toThrow(IommuError);
    expect(() => mmu.translate(dev, iova(0), 0, "read")).toThrow(/1..4096 bytes/);
    expect(() => mmu.translate(dev, unsafeIova(-1), 1, "read")).toThrow(/iova = -1/);
    expect(trace.counters.snapshot().nonZero()).toEqual({});
  });

  it("an access beyond the IOVA space faults not-mapped", () => {
    const { mmu, dev } = setup({ vaBits: 39 });
    expect(mmu.translate(dev, iova(2 ** 39), 4, "read")).toBe(-1);
    expect(mmu.faults()[0]?.reason).toBe("not-mapped");
  });

  it("keeps at most faultLogEntries records and counts the rest as lost", () => {
    const { mmu, dev, trace } = setup({ faultLogEntries: 2 });
    for (let i = 0; i < 5; i++) mmu.translate(dev, iova(i * SZ_4K), 4, "read");
    expect(mmu.faults()).toHaveLength(2);
    expect(mmu.faultsLost).toBe(3);
    expect(trace.counters.get(Counter.IommuFaults)).toBe(5);
  });
});

describe("lazy invalidation window", () => {
  it("a stale IOTLB entry keeps translating to the old page until invalidated", () => {
    const { mmu, dom, dev, trace } = setup();
    dom.map(iova(0x1000), physAddr(0xa000), SZ_4K, RW);
    expect(mmu.translate(dev, iova(0x1000), 4, "read")).toBe(0xa000);
    dom.unmap(iova(0x1000), SZ_4K);
    expect(dom.iovaToPhys(iova(0x1000))).toBeUndefined();
    // The device still reaches the freed page: the window lazy mode opens.
    expect(mmu.translate(dev, iova(0x1004), 4, "write")).toBe(0xa004);
    expect(trace.counters.get(Counter.IotlbStaleHits)).toBe(1);
    // Remapped elsewhere without invalidation: still the old page.
    dom.map(iova(0x1000), physAddr(0xb000), SZ_4K, RW);
    expect(mmu.translate(dev, iova(0x1000), 4, "read")).toBe(0xa000);
    dom.invalidateRange(iova(0x1000), SZ_4K);
    expect(mmu.translate(dev, iova(0x1000), 4, "read")).toBe(0xb000);
    expect(trace.counters.get(Counter.IotlbStaleHits)).toBe(2);
    expect(trace.counters.get(Counter.IotlbInvalRange)).toBe(1);
  });

  it("after unmap and invalidation the device faults", () => {
    const { mmu, dom, dev } = setup();
    dom.map(iova(0), physAddr(0), SZ_2M + SZ_4K, RW);
    mmu.translate(dev, iova(0), 4, "read");
    mmu.translate(dev, iova(SZ_2M), 4, "read");
    dom.unmap(iova(0), SZ_2M + SZ_4K);
    dom.invalidateAll();
    expect(mmu.iotlb.size).toBe(0);
    expect(mmu.translate(dev, iova(0), 4, "read")).toBe(-1);
    expect(mmu.translate(dev, iova(SZ_2M), 4, "read")).toBe(-1);
  });

  it("domain tags keep domains apart; global flush drops every domain", () => {
    const { mmu, dom, dev, trace } = setup();
    const other = mmu.allocDomain("paging");
    mmu.attachDevice(OTHER_BDF, other);
    dom.map(iova(0), physAddr(0x1000), SZ_4K, RW);
    other.map(iova(0), physAddr(0x2000), SZ_4K, RW);
    expect(mmu.translate(dev, iova(0), 4, "read")).toBe(0x1000);
    expect(mmu.translate(OTHER_BDF, iova(0), 4, "read")).toBe(0x2000);
    other.invalidateAll();
    expect(mmu.iotlb.size).toBe(1);
    mmu.flushIotlbAll();
    expect(mmu.iotlb.size).toBe(0);
    expect(trace.counters.get(Counter.IotlbInvalDomain)).toBe(1);
    expect(trace.counters.get(Counter.IotlbInvalGlobal)).toBe(1);
  });
});

describe("iotlbSyncMap", () => {
  it("with requiresSyncMap new PTEs are invisible to the device until synced", () => {
    const { mmu, dom, dev, trace } = setup({ requiresSyncMap: true });
    dom.map(iova(0), physAddr(0x3000), 2 * SZ_4K, RW);
    expect(dom.iovaToPhys(iova(0))).toBe(0x3000); // the CPU sees the table
    expect(mmu.translate(dev, iova(0), 4, "read")).toBe(-1);
    dom.iotlbSyncMap(iova(0), SZ_4K);
    expect(mmu.translate(dev, iova(0), 4, "read")).toBe(0x3000);
    expect(mmu.translate(dev, iova(SZ_4K), 4, "read")).toBe(-1);
    expect(trace.counters.get(Counter.IotlbSyncMap)).toBe(1);
  });

  it("without requiresSyncMap the sync is counted and changes nothing", () => {
    const { mmu, dom, dev, trace } = setup();
    dom.map(iova(0), physAddr(0x3000), SZ_4K, RW);
    expect(mmu.translate(dev, iova(0), 4, "read")).toBe(0x3000);
    dom.iotlbSyncMap(iova(0), SZ_4K);
    expect(trace.counters.get(Counter.IotlbSyncMap)).toBe(1);
    expect(mmu.translate(dev, iova(0), 4, "read")).toBe(0x3000);
  });
});

describe("IOTLB capacity", () => {
  it("evicts the least recently used entry of a full set", () => {
    const { mmu, dom, dev, trace } = setup({ iotlbEntries: 2, iotlbWays: 2 });
    dom.map(iova(0), physAddr(0), 3 * SZ_4K, RW);
    mmu.translate(dev, iova(0), 1, "read");
    mmu.translate(dev, iova(SZ_4K), 1, "read");
    mmu.translate(dev, iova(0), 1, "read"); // 0 is now the most recent
    mmu.translate(dev, iova(2 * SZ_4K), 1, "read"); // evicts 4K
    expect(trace.counters.get(Counter.IotlbEvictions)).toBe(1);
    expect(mmu.iotlb.size).toBe(2);
    const misses = trace.counters.get(Counter.IotlbMisses);
    mmu.translate(dev, iova(0), 1, "read");
    expect(trace.counters.get(Counter.IotlbMisses)).toBe(misses);
    mmu.translate(dev, iova(SZ_4K), 1, "read");
    expect(trace.counters.get(Counter.IotlbMisses)).toBe(misses + 1);
  });

  it("never holds more than its capacity", () => {
    const { mmu, dom, dev } = setup({ iotlbEntries: 64, iotlbWays: 4 });
    dom.map(iova(0), physAddr(0), SZ_1G, RW);
    for (let i = 0; i < 1000; i++) mmu.translate(dev, iova(i * 7 * SZ_4K), 1, "read");
    expect(mmu.iotlb.size).toBeLessThanOrEqual(64);
    expect(mmu.iotlb).toMatchObject({ capacity: 64, ways: 4, sets: 16 });
  });
});

describe("events", () => {
  it("emits map, unmap, invalidate, sync-map and fault events only when someone listens", () => {
    const { mmu, dom, dev, trace } = setup();
    dom.map(iova(0), physAddr(0), SZ_4K, RW); // nobody listens: nothing recorded
    const seen: TraceEvent[] = [];
    const off = trace.events.subscribe((e) => seen.push(e));
    dom.map(iova(SZ_4K), physAddr(0x5000), SZ_4K, IommuProt.READ);
    dom.iotlbSyncMap(iova(SZ_4K), SZ_4K);
    mmu.translate(dev, iova(SZ_4K), 4, "write");
    dom.unmap(iova(SZ_4K), SZ_4K);
    dom.invalidateRange(iova(SZ_4K), SZ_4K);
    mmu.flushIotlbAll();
    off();
    expect(seen.map((e) => e.type)).toEqual([
      "iommu.map", "iotlb.sync-map", "iotlb.lookup", "iotlb.fill", "iommu.fault", "iommu.unmap", "iotlb.invalidate", "iotlb.invalidate",
    ]);
    expect(seen[0]).toEqual({ type: "iommu.map", t: 0, unit: "iommu0", domain: dom.id, iova: SZ_4K, phys: 0x5000, size: SZ_4K, prot: 1, pgsize: SZ_4K });
    expect(seen[2]).toEqual({ type: "iotlb.lookup", t: 0, unit: "iommu0", device: dev, domain: dom.id, iova: SZ_4K, result: "miss" });
    expect(seen[3]).toEqual({ type: "iotlb.fill", t: 0, unit: "iommu0", domain: dom.id, iova: SZ_4K, size: SZ_4K, phys: 0x5000 });
    expect(seen[5]).toMatchObject({ unmapped: SZ_4K, pgsize: SZ_4K });
    expect(seen[7]).toMatchObject({ scope: "global" });
  });

  it("reports IOTLB hits, misses and stale hits (a cleared PTE still cached) in order", () => {
    const { mmu, dom, dev, trace } = setup();
    dom.map(iova(0x7000), physAddr(0x9000), SZ_4K, RW);
    const seen: TraceEvent[] = [];
    const off = trace.events.subscribe((e) => seen.push(e));
    mmu.translate(dev, iova(0x7000), 4, "read");
    mmu.translate(dev, iova(0x7008), 4, "read");
    dom.unmap(iova(0x7000), SZ_4K); // no invalidation: the entry stays, stale
    expect(mmu.translate(dev, iova(0x7010), 4, "read")).toBe(0x9010);
    dom.invalidateRange(iova(0x7000), SZ_4K);
    expect(mmu.translate(dev, iova(0x7010), 4, "read")).toBe(-1);
    off();
    const lookups = seen.filter((e) => e.type === "iotlb.lookup").map((e) => e.result);
    expect(lookups).toEqual(["miss", "hit", "stale-hit", "miss"]);
    expect(seen.filter((e) => e.type === "iotlb.fill")).toHaveLength(1);
    expect(trace.counters.get(Counter.IotlbStaleHits)).toBe(1);
  });

  it("a single-granule map into an empty table reports the tables it linked, top-down, then the map", () => {
    const { dom, trace } = setup();
    const seen: TraceEvent[] = [];
    const off = trace.events.subscribe((e) => seen.push(e));
    const at = 5 * SZ_1G + 3 * SZ_2M + 7 * SZ_4K;
    dom.map(iova(at), physAddr(0x9000), SZ_4K, RW);
    dom.map(iova(at + SZ_4K), physAddr(0xa000), SZ_4K, RW); // same leaf table: nothing linked
    off();
    expect(seen.map((e) => (e.type === "iommu.pt-alloc" ? `alloc ${e.level}@${e.iova}` : e.type === "iommu.map" ? `map ${e.iova}/${e.pgsize}` : e.type))).toEqual([
      "alloc 3@0",
      `alloc 2@${5 * SZ_1G}`,
      `alloc 1@${5 * SZ_1G + 3 * SZ_2M}`,
      `map ${at}/${SZ_4K}`,
      `map ${at + SZ_4K}/${SZ_4K}`,
    ]);
    expect(trace.counters.get(Counter.PtPagesAllocated)).toBe(3);
  });

  it("reports page-table pages linked and freed with their level and base IOVA, and leaf sizes per run", () => {
    const { dom, trace } = setup();
    const seen: TraceEvent[] = [];
    const off = trace.events.subscribe((e) => seen.push(e));
    // 4 KiB + 2 MiB + 4 KiB: three runs of leaves; the 2 MiB-aligned middle is one 2 MiB leaf.
    const base = SZ_1G + SZ_2M - SZ_4K;
    dom.map(iova(base), physAddr(base), SZ_2M + 2 * SZ_4K, RW);
    const maps = seen.filter((e) => e.type === "iommu.map").map((e) => [e.iova, e.size, e.pgsize]);
    expect(maps).toEqual([[base, SZ_4K, SZ_4K], [SZ_1G + SZ_2M, SZ_2M, SZ_2M], [SZ_1G + 2 * SZ_2M, SZ_4K, SZ_4K]]);
    const allocs = seen.filter((e) => e.type === "iommu.pt-alloc").map((e) => [e.level, e.iova]);
    // The level-3 table under the root (its 512 GiB span from 0), the level-2 table of the 1 GiB at 1 GiB,
    // then one table of 4 KiB leaves per edge.
    expect(allocs).toEqual([[3, 0], [2, SZ_1G], [1, SZ_1G], [1, SZ_1G + 2 * SZ_2M]]);
    seen.length = 0;
    const { freed } = dom.unmap(iova(SZ_1G), SZ_1G);
    dom.invalidateAll();
    dom.releasePtPages(freed);
    off();
    expect(seen.find((e) => e.type === "iommu.unmap")).toMatchObject({ iova: SZ_1G, unmapped: SZ_2M + 2 * SZ_4K, pgsize: SZ_4K });
    const frees = seen.filter((e) => e.type === "iommu.pt-free").map((e) => [e.level, e.iova]);
    expect(frees).toEqual([[2, SZ_1G], [1, SZ_1G], [1, SZ_1G + 2 * SZ_2M]]);
  });
});
