import { describe, expect, it } from "vitest";
import { costProfiles } from "@dmasim/dma";
import { builtinScenario, runScenario, sweep, validateScenario } from "../index.js";
import type { Scenario } from "../index.js";

function scenario(name: string): Scenario {
  const s = builtinScenario(name);
  if (s === undefined) throw new Error(`no built-in scenario ${name}`);
  return { ...s, workload: { ...s.workload, ...(s.workload.kind === "nvme" ? { ops: 200 } : {}) } };
}

describe("a scenario's cost profile", () => {
  it("prices the same counters differently: the caching-mode guest pays a trap per iotlb_sync_map, bare-metal VT-d nothing", () => {
    const s = scenario("nvme-4k-randread");
    const vtd = runScenario(s, { api: "classic", iommu: "strict", costProfile: "vtd" });
    const guest = runScenario({ ...s, kernel: { costProfile: "vtd-caching-mode" } }, { api: "classic", iommu: "strict" });
    expect(vtd.ok && guest.ok).toBe(true);
    expect(guest.counters).toEqual(vtd.counters);
    const syncs = vtd.counters.IotlbSyncMap ?? 0;
    expect(syncs).toBe(200);
    const cm = costProfiles["vtd-caching-mode"];
    const bare = costProfiles.vtd;
    expect(cm.IotlbSyncMap!.ns).toBeGreaterThan(0);
    expect(bare.IotlbSyncMap!.ns).toBe(0);
    let diff = 0;
    for (const [counter, count] of Object.entries(vtd.counters)) diff += count * ((cm[counter]?.ns ?? 0) - (bare[counter]?.ns ?? 0));
    expect(diff).toBeGreaterThan(syncs * cm.IotlbSyncMap!.ns);
    expect(guest.modelledNs - vtd.modelledNs).toBeCloseTo(diff, 3);
  });

  it("the run context's profile (a CLI --profile) replaces the scenario's; a sweep passes it to every run", () => {
    const s: Scenario = { ...scenario("nvme-4k-randread"), kernel: { costProfile: "virtio-iommu" } };
    const own = runScenario(s, { api: "two-step", iommu: "strict" });
    const replaced = runScenario(s, { api: "two-step", iommu: "strict", costProfile: "smmuv3" });
    const plain = runScenario({ ...s, kernel: {} }, { api: "two-step", iommu: "strict" });
    expect(replaced.modelledNs).toBeCloseTo(plain.modelledNs, 6);
    expect(own.modelledNs).toBeGreaterThan(replaced.modelledNs);
    const runs = sweep(s, { api: ["two-step"], iommu: ["strict", "lazy"] }, { costProfile: "smmuv3" });
    expect(runs[0]!.modelledNs).toBeCloseTo(replaced.modelledNs, 6);
  });

  it("a scenario file names its profile; a wrong name is an issue with its path", () => {
    const s = scenario("nvme-4k-randread");
    expect(validateScenario({ ...s, kernel: { costProfile: "amd-vi" } }).kernel?.costProfile).toBe("amd-vi");
    expect(() => validateScenario({ ...s, kernel: { costProfile: "power9" } })).toThrow(/kernel\.costProfile/);
  });
});
