import { describe, expect, it } from "vitest";
import { classicVsTwoStep, lazyWindow, p2pThroughSwitch, renderDemo, runDemo, throughIommu, untrustedBounce } from "./demo.js";

describe("dmasim demo", () => {
  it("a device reads memory through the IOMMU and faults after destroy", () => {
    const s = throughIommu();
    expect(s.ok).toBe(true);
    const counters = s.data.counters as Record<string, number>;
    expect(counters.IotlbSyncMap).toBe(1);
    expect(counters.PteWrites).toBeGreaterThan(0);
    expect(counters.IommuFaults).toBe(1);
  });

  it("the two-step API needs one IOVA and one IOTLB sync where the classic path needs 256", () => {
    const s = classicVsTwoStep();
    expect(s.ok).toBe(true);
    const runs = s.data.runs as { api: string; mode: string; iovaAllocs: number; iotlbSyncs: number; pteWrites: number; invalidations: number; modelledNs: number }[];
    const find = (api: string, mode: string) => runs.find((r) => r.api === api && r.mode === mode);
    expect(find("classic", "strict")).toMatchObject({ iovaAllocs: 256, iotlbSyncs: 256, pteWrites: 256, invalidations: 256 });
    expect(find("two-step", "strict")).toMatchObject({ iovaAllocs: 1, iotlbSyncs: 1, pteWrites: 256, invalidations: 1 });
    // Lazy mode batches the invalidations of the classic path into flush-queue flushes.
    expect(find("classic", "lazy")?.invalidations).toBeLessThan(256);
    expect(find("two-step", "strict")!.modelledNs).toBeLessThan(find("classic", "strict")!.modelledNs);
  });

  it("P2P through the switch is BUS_ADDR and never touches the IOMMU", () => {
    const s = p2pThroughSwitch();
    expect(s.ok).toBe(true);
    expect(s.data.distance).toBeGreaterThan(0);
  });

  it("strict mode has no stale window, lazy mode's closes within the 10 ms flush timeout", () => {
    const s = lazyWindow();
    expect(s.ok).toBe(true);
    const results = s.data.results as { mode: string; staleReads: number; windowNs: number }[];
    expect(results[0]).toMatchObject({ mode: "strict", staleReads: 0 });
    expect(results[1]?.staleReads).toBeGreaterThan(0);
    expect(results[1]?.windowNs).toBeLessThanOrEqual(10_000_000);
  });

  it("an untrusted device's partial granules bounce and the padding is cleared", () => {
    const s = untrustedBounce();
    expect(s.ok).toBe(true);
    expect((s.data.counters as Record<string, number>).SwiotlbBounceBytes).toBeGreaterThan(0);
  });

  it("renders every section and a closing verdict", () => {
    const text = renderDemo(runDemo());
    expect(text).toContain("All 5 checks held.");
    expect(text).not.toContain("FAILED");
  });
});
