import { describe, expect, it } from "vitest";
import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import { counterNames } from "./counters.js";
import {
  COST_PROFILE_DESCRIPTIONS,
  COST_PROFILE_NAMES,
  DEFAULT_COST_PROFILE,
  DmaConfigError,
  DmaDirection,
  costProfile,
  costProfiles,
  defaultCostProfile,
  dmaMapPhys,
  dmaMappingError,
  dmaUnmapPhys,
} from "./index.js";
import { freshPages, rig } from "./test-fixtures.js";

/** A published source names a paper, a patch series, a mailing-list measurement or a kernel source file. */
const CITATION = /Gunthorpe|Saleh|Brucker|derived|drivers\/iommu|LKML/;

describe("named cost profiles", () => {
  it("every profile has the same counters priced, and every row has a source: a citation, or 'assumed' with a reason", () => {
    const counters = Object.keys(costProfiles.smmuv3).sort();
    for (const name of COST_PROFILE_NAMES) {
      const profile = costProfiles[name];
      expect(COST_PROFILE_DESCRIPTIONS[name].length).toBeGreaterThan(10);
      expect(Object.keys(profile).sort()).toEqual(counters);
      for (const [key, row] of Object.entries(profile)) {
        expect(row.counter).toBe(key);
        expect(counterNames).toContain(row.counter);
        expect(Number.isFinite(row.ns) && row.ns >= 0).toBe(true);
        if (row.assumed) expect(row.source).toMatch(/^assumed[ :].{20,}/);
        else expect(row.source).toMatch(CITATION);
        if (row.shared !== undefined) {
          expect(row.shared.ns).toBeGreaterThan(0);
          expect(row.shared.ns).toBeLessThanOrEqual(row.ns);
        }
      }
    }
  });

  it("default is one of the named profiles, the same rows", () => {
    expect(costProfiles.default).toBe(costProfiles[DEFAULT_COST_PROFILE]);
    expect(defaultCostProfile).toBe(costProfiles[DEFAULT_COST_PROFILE]);
    expect(COST_PROFILE_DESCRIPTIONS.default).toContain(DEFAULT_COST_PROFILE);
  });

  it("bare-metal VT-d, SMMUv3 and AMD-Vi pay nothing for iotlb_sync_map; the virtual IOMMUs pay a trap", () => {
    for (const name of ["vtd", "smmuv3", "amd-vi"] as const) {
      expect(costProfiles[name].IotlbSyncMap).toMatchObject({ ns: 0, assumed: false });
      expect(costProfiles[name].IotlbSyncMap!.source).toMatch(/drivers\/iommu/);
    }
    for (const name of ["vtd-caching-mode", "virtio-iommu"] as const) {
      expect(costProfiles[name].IotlbSyncMap!.ns).toBeGreaterThan(1000);
      expect(costProfiles[name].IotlbSyncMap!.shared?.resource).toBe("inval-queue");
    }
  });

  it("an invalidation is priced as a submit on the CPU plus a wait on the shared queue, and VT-d and SMMUv3 differ", () => {
    for (const name of COST_PROFILE_NAMES) {
      for (const counter of ["IotlbInvalRange", "IotlbInvalDomain", "IotlbInvalGlobal"] as const) {
        const row = costProfiles[name][counter]!;
        expect(row.shared?.resource).toBe("inval-queue");
        expect(row.shared!.ns).toBeLessThan(row.ns);
        expect(row.source).toMatch(/\[submit \d+ ns \+ wait \d+ ns\]$/);
      }
    }
    expect(costProfiles.vtd.IotlbInvalRange!.ns).not.toBe(costProfiles.smmuv3.IotlbInvalRange!.ns);
    // The IOVA tree is taken under its lock whatever the IOMMU: every profile queues tree operations.
    for (const name of COST_PROFILE_NAMES) {
      expect(costProfiles[name].IovaAllocTree!.shared).toEqual({ resource: "iova-tree-lock", ns: costProfiles[name].IovaAllocTree!.ns });
      expect(costProfiles[name].IovaAllocCache!.shared).toBeUndefined();
    }
  });

  it("a kernel takes a profile by name, with overrides on top; an override keeps the row's shared fraction", () => {
    const profile = costProfile("vtd", { IotlbInvalRange: 1800 });
    const vtdRange = costProfiles.vtd.IotlbInvalRange!;
    expect(profile.IotlbInvalRange).toMatchObject({ ns: 1800, source: "user override", shared: { resource: "inval-queue", ns: (1800 * vtdRange.shared!.ns) / vtdRange.ns } });
    expect(profile.PteWrites).toBe(costProfiles.vtd.PteWrites);

    const runs = (["vtd", "vtd-caching-mode"] as const).map((name) => {
      const r = rig({ kernel: { costProfile: name, costOverrides: { DmaMapCalls: 100 } } });
      expect(r.kernel.profileName).toBe(name);
      const since = r.platform.trace.counters.snapshot();
      const addr = dmaMapPhys(r.dev, unsafePhysAddr(freshPages(r.platform, 1)), PAGE_SIZE, DmaDirection.TO_DEVICE);
      expect(dmaMappingError(r.dev, addr)).toBe(0);
      dmaUnmapPhys(r.dev, addr, PAGE_SIZE, DmaDirection.TO_DEVICE);
      return r.kernel.costs(since);
    });
    // Same counters, different prices: the caching-mode guest pays the sync_map trap and a dearer invalidation.
    expect(runs[0]!.counters).toEqual(runs[1]!.counters);
    const line = (i: number, c: string): number => runs[i]!.lines.find((l) => l.counter === c)?.ns ?? 0;
    expect(line(0, "DmaMapCalls")).toBe(100);
    expect(line(0, "IotlbSyncMap")).toBe(0);
    expect(line(1, "IotlbSyncMap")).toBe(costProfiles["vtd-caching-mode"].IotlbSyncMap!.ns);
    let diff = 0;
    for (const [counter, count] of Object.entries(runs[0]!.counters)) {
      const a = costProfiles.vtd[counter];
      const b = costProfiles["vtd-caching-mode"][counter];
      if (a !== undefined && b !== undefined && counter !== "DmaMapCalls") diff += count * (b.ns - a.ns);
    }
    expect(diff).toBeGreaterThan(costProfiles["vtd-caching-mode"].IotlbSyncMap!.ns);
    expect(runs[1]!.totalNs - runs[0]!.totalNs).toBeCloseTo(diff, 6);
  });

  it("an unknown profile name is refused with the list of names", () => {
    expect(() => costProfile("power9" as never)).toThrow(DmaConfigError);
    expect(() => rig({ kernel: { costProfile: "power9" as never } })).toThrow(/a cost profile name or an object of nanoseconds by Counter name/);
    expect(() => costProfile("power9" as never)).toThrow(/vtd-caching-mode/);
  });
});
