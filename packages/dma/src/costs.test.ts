import { describe, expect, it } from "vitest";
import { PAGE_SIZE, physAddr, unsafePhysAddr } from "@dmasim/memory";
import { Counter, counterNames } from "./counters.js";
import {
  DmaConfigError,
  DmaDirection,
  DmaIovaState,
  costProfile,
  costProfiles,
  defaultCostProfile,
  dmaIovaDestroy,
  dmaIovaLink,
  dmaIovaSync,
  dmaIovaTryAlloc,
  dmaMapPhys,
  dmaMappingError,
  dmaUnmapPhys,
  priceCounters,
  priceCounts,
  unsafeDmaAddr,
} from "./index.js";
import type { CostReport } from "./index.js";
import { freshPages, rig } from "./test-fixtures.js";
import { dmaAddr } from "./constants.js";

const PAGES = 256;

function consistent(report: CostReport): void {
  let total = 0;
  let assumed = 0;
  for (const line of report.lines) {
    expect(report.counters[line.counter]).toBe(line.count);
    expect(line.ns).toBeCloseTo(line.count * line.nsEach, 9);
    total += line.ns;
    if (line.assumed) assumed += line.ns;
  }
  expect(report.totalNs).toBeCloseTo(total, 6);
  expect(report.assumedNs).toBeCloseTo(assumed, 6);
}

describe("kernel.costs()", () => {
  it("reports counters and modelled time together, for the whole run or since a snapshot", () => {
    const { platform, kernel, dev } = rig();
    const phys = freshPages(platform, 1);
    const since = platform.trace.counters.snapshot();
    const addr = dmaMapPhys(dev, physAddr(phys), PAGE_SIZE, DmaDirection.TO_DEVICE);
    dmaMappingError(dev, addr);
    const report = kernel.costs(since);
    expect(report.counters).toMatchObject({ DmaMapCalls: 1, IotlbSyncMap: 1, PteWrites: 1 });
    expect(report.lines.map((l) => l.counter)).toEqual(expect.arrayContaining(["DmaMapCalls", "IotlbSyncMap", "PteWrites", "IommuMapCalls"]));
    consistent(report);
    expect(report.totalNs).toBeGreaterThan(0);
    // The whole-run report also holds what happened before the snapshot (the swiotlb pool allocation).
    const all = kernel.costs();
    consistent(all);
    expect(all.counters.PageAllocs).toBeGreaterThan(report.counters.PageAllocs ?? 0);
    dmaUnmapPhys(dev, addr, PAGE_SIZE, DmaDirection.TO_DEVICE);
  });

  it("a line exists for every costed counter that moved, and only for those", () => {
    const { kernel } = rig();
    const report = kernel.costs();
    for (const line of report.lines) expect(defaultCostProfile[line.counter]).toBeDefined();
    for (const [name, count] of Object.entries(report.counters)) {
      const costed = defaultCostProfile[name] !== undefined;
      expect(report.lines.some((l) => l.counter === name)).toBe(costed && count !== 0);
    }
  });
});

describe("the cost profile", () => {
  it("every default row names a real counter and cites where its figure comes from", () => {
    const rows = Object.values(defaultCostProfile);
    expect(rows.length).toBeGreaterThan(10);
    for (const row of rows) {
      expect(counterNames).toContain(row.counter);
      expect(defaultCostProfile[row.counter]).toBe(row);
      expect(row.ns).toBeGreaterThanOrEqual(0);
      if (row.assumed) expect(row.source).toMatch(/^assumed/);
      else expect(row.source).toMatch(/Gunthorpe|Saleh|derived|drivers\/iommu/);
    }
    // The rows fitted to published figures reproduce them: iommu_map of 1 and 256 pages.
    const map = (pages: number): number => defaultCostProfile.IommuMapCalls!.ns + pages * defaultCostProfile.PteWrites!.ns;
    expect(map(1)).toBeGreaterThanOrEqual(50);
    expect(map(1)).toBeLessThanOrEqual(57);
    expect(map(256)).toBeGreaterThanOrEqual(380);
    expect(map(256)).toBeLessThanOrEqual(405);
  });

  it("overrides replace a row, say so, and change the modelled time", () => {
    const profile = costProfile({ IotlbSyncMap: 7, IovaAllocTree: 1234 });
    expect(profile.IotlbSyncMap).toMatchObject({ ns: 7, source: "user override", assumed: false });
    expect(profile.IovaAllocTree!.ns).toBe(1234);
    expect(profile.PteWrites).toBe(defaultCostProfile.PteWrites);
    const base = rig();
    const cheap = rig({ kernel: { costProfile: { IotlbSyncMap: 1000 } } });
    for (const r of [base, cheap]) {
      const addr = dmaMapPhys(r.dev, physAddr(freshPages(r.platform, 1)), PAGE_SIZE, DmaDirection.TO_DEVICE);
      dmaMappingError(r.dev, addr);
    }
    expect(base.kernel.costs().counters.IotlbSyncMap).toBe(1);
    expect(cheap.kernel.costs().counters.IotlbSyncMap).toBe(1);
    expect(cheap.kernel.costs().totalNs - base.kernel.costs().totalNs).toBeCloseTo(1000 - defaultCostProfile.IotlbSyncMap!.ns, 6);
  });

  it("bad overrides are DmaConfigError naming the counter", () => {
    expect(() => costProfile({ IotlbSyncMap: -1 })).toThrow(DmaConfigError);
    expect(() => costProfile({ IotlbSyncMap: NaN })).toThrow(/costProfile.IotlbSyncMap = NaN is invalid: expected nanoseconds >= 0/);
    expect(() => costProfile({ NoSuchCounter: 5 } as never)).toThrow(/costProfile.NoSuchCounter = 0x5 is invalid: expected a Counter name such as IotlbSyncMap/);
    expect(() => rig({ kernel: { costProfile: { PteWrites: Infinity } } })).toThrow(DmaConfigError);
  });

  it("priceCounts re-prices a run's counters under another profile, the same as pricing the snapshot", () => {
    const { platform, dev } = rig();
    const addr = dmaMapPhys(dev, unsafePhysAddr(freshPages(platform, 4)), 4 * PAGE_SIZE, DmaDirection.TO_DEVICE);
    expect(dmaMappingError(dev, addr)).toBe(0);
    dmaUnmapPhys(dev, addr, 4 * PAGE_SIZE, DmaDirection.TO_DEVICE);
    const snap = platform.trace.counters.snapshot();
    for (const name of ["vtd", "virtio-iommu"] as const) {
      const a = priceCounters(snap, costProfiles[name]);
      const b = priceCounts(a.counters, costProfiles[name]);
      expect(b.lines).toEqual(a.lines);
      expect(b.totalNs).toBe(a.totalNs);
      expect(b.sharedNs).toEqual(a.sharedNs);
    }
    expect(priceCounts({ IotlbInvalRange: 2 }, costProfiles.vtd).sharedNs["inval-queue"]).toBe(2 * costProfiles.vtd.IotlbInvalRange!.shared!.ns);
  });

  it("priceCounters prices any snapshot", () => {
    const { platform } = rig();
    platform.trace.counters.add(Counter.IotlbInvalRange, 3);
    const report = priceCounters(platform.trace.counters.snapshot());
    const line = report.lines.find((l) => l.counter === "IotlbInvalRange")!;
    expect(line.count).toBe(3);
    expect(line.ns).toBe(3 * defaultCostProfile.IotlbInvalRange!.ns);
  });
});

describe("the two-step API against per-page dma_map_phys: 256 pages", () => {
  it("costs 1 IotlbSyncMap instead of 256, and the modelled time shows it where a sync costs (virtio-iommu)", () => {
    const two = rig({ kernel: { costProfile: "virtio-iommu" } });
    const classic = rig({ kernel: { costProfile: "virtio-iommu" } });
    const physTwo = freshPages(two.platform, PAGES);
    const physClassic = freshPages(classic.platform, PAGES);

    const sinceTwo = two.platform.trace.counters.snapshot();
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(two.dev, state, unsafePhysAddr(physTwo), PAGES * PAGE_SIZE)).toBe(true);
    for (let i = 0; i < PAGES; i++) {
      expect(dmaIovaLink(two.dev, state, unsafePhysAddr(physTwo + i * PAGE_SIZE), i * PAGE_SIZE, PAGE_SIZE, DmaDirection.TO_DEVICE, 0)).toBe(0);
    }
    expect(dmaIovaSync(two.dev, state, 0, PAGES * PAGE_SIZE)).toBe(0);
    const twoStep = two.kernel.costs(sinceTwo);

    const sinceClassic = classic.platform.trace.counters.snapshot();
    const addrs: number[] = [];
    for (let i = 0; i < PAGES; i++) {
      const a = dmaMapPhys(classic.dev, physAddr(physClassic + i * PAGE_SIZE), PAGE_SIZE, DmaDirection.TO_DEVICE);
      expect(dmaMappingError(classic.dev, a)).toBe(0);
      addrs.push(a);
    }
    const perPage = classic.kernel.costs(sinceClassic);

    expect(twoStep.counters.IotlbSyncMap).toBe(1);
    expect(perPage.counters.IotlbSyncMap).toBe(PAGES);
    expect(twoStep.counters.PteWrites).toBe(PAGES);
    expect(perPage.counters.PteWrites).toBe(PAGES);
    expect((twoStep.counters.IovaAllocCache ?? 0) + (twoStep.counters.IovaAllocTree ?? 0)).toBe(1);
    expect((perPage.counters.IovaAllocCache ?? 0) + (perPage.counters.IovaAllocTree ?? 0)).toBe(PAGES);
    const syncNs = costProfiles["virtio-iommu"].IotlbSyncMap!.ns;
    expect(syncNs).toBeGreaterThan(1000);
    expect(perPage.totalNs - twoStep.totalNs).toBeGreaterThanOrEqual((PAGES - 1) * syncNs);
    // Both devices see the same bytes: the saving is not bought with a wrong mapping.
    two.platform.memory.write(physAddr(physTwo + 100 * PAGE_SIZE), new Uint8Array([1, 2, 3]));
    classic.platform.memory.write(physAddr(physClassic + 100 * PAGE_SIZE), new Uint8Array([1, 2, 3]));
    expect(two.ep.dmaRead(unsafeDmaAddr(state.addr + 100 * PAGE_SIZE), 3)).toEqual(new Uint8Array([1, 2, 3]));
    expect(classic.ep.dmaRead(unsafeDmaAddr(addrs[100]!), 3)).toEqual(new Uint8Array([1, 2, 3]));

    dmaIovaDestroy(two.dev, state, PAGES * PAGE_SIZE, DmaDirection.TO_DEVICE, 0);
    for (const a of addrs) dmaUnmapPhys(classic.dev, dmaAddr(a), PAGE_SIZE, DmaDirection.TO_DEVICE);
  });
});
