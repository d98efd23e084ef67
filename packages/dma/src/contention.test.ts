import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import { DmaConfigError, DmaDirection, dmaMapPhys, dmaMappingError, dmaUnmapPhys, modelThroughput } from "./index.js";
import type { IommuMode } from "./index.js";
import { freshPages, rig } from "./test-fixtures.js";

const report = (totalNs: number, tree = 0, inval = 0): { totalNs: number; sharedNs: { "iova-tree-lock": number; "inval-queue": number } } => ({
  totalNs,
  sharedNs: { "iova-tree-lock": tree, "inval-queue": inval },
});

describe("modelThroughput: CPUs sharing a lock or an invalidation queue", () => {
  it("one CPU pays its cost and waits for nobody", () => {
    const r = modelThroughput({ cpus: 1, report: report(2000, 300, 500), ios: 2, baseNs: 1000 });
    expect(r.cpuNs).toBe(2000);
    expect(r.iops).toBeCloseTo(1e9 / 2000, 6);
    expect(r.resources["inval-queue"]).toMatchObject({ holdNs: 250, waitNs: 0 });
    expect(r.resources["iova-tree-lock"].waitNs).toBe(0);
  });

  it("without shared work, N CPUs do N times one CPU's IOPS; with it, they queue", () => {
    const free = modelThroughput({ cpus: 16, report: report(1000), ios: 1 });
    expect(free.iops).toBeCloseTo(16e6, 3);
    expect(free.bottleneck).toBe("cpu");
    const shared = modelThroughput({ cpus: 16, report: report(1000, 0, 500), ios: 1 });
    // The queue serves one I/O per 500 ns at most: 2 M IOPS, whatever the CPU count.
    expect(shared.iops).toBeLessThanOrEqual(2e6 + 1e-6);
    expect(shared.iops).toBeGreaterThan(1.9e6);
    expect(shared.bottleneck).toBe("inval-queue");
    expect(shared.resources["inval-queue"].waitNs).toBeGreaterThan(1000);
    expect(shared.perIoNs).toBeCloseTo((16 * 1e9) / shared.iops, 6);
  });

  it("two IOMMUs (or two devices' tree locks) serve twice the I/Os", () => {
    const one = modelThroughput({ cpus: 64, report: report(1000, 400, 0), ios: 1 });
    const two = modelThroughput({ cpus: 64, report: report(1000, 400, 0), ios: 1, instances: { "iova-tree-lock": 2 } });
    expect(one.iops).toBeCloseTo(2.5e6, -4);
    expect(two.iops).toBeGreaterThan(1.9 * one.iops);
    expect(two.iops).toBeLessThanOrEqual(5e6);
  });

  it("the device caps what the CPUs could do", () => {
    const r = modelThroughput({ cpus: 8, report: report(500), ios: 1, deviceIops: 1e6 });
    expect(r.hostIops).toBeCloseTo(16e6, 3);
    expect(r.iops).toBe(1e6);
    expect(r.bottleneck).toBe("device");
  });

  it("IOPS never falls as CPUs are added, never beats the bottleneck law, and obeys Little's law", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 64 }),
        fc.double({ min: 10, max: 10_000, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (cpus, total, treeFrac, invalFrac) => {
          const tree = total * treeFrac * 0.5;
          const inval = total * invalFrac * 0.5;
          const at = (n: number): number => modelThroughput({ cpus: n, report: report(total, tree, inval), ios: 1 }).iops;
          const r = modelThroughput({ cpus, report: report(total, tree, inval), ios: 1 });
          if (cpus > 1) expect(r.iops).toBeGreaterThanOrEqual(at(cpus - 1) * (1 - 1e-9));
          expect(r.iops).toBeLessThanOrEqual((cpus * 1e9) / total + 1e-6);
          for (const d of [tree, inval]) if (d > 0) expect(r.iops).toBeLessThanOrEqual(1e9 / d + 1e-6);
          // Little: every CPU is somewhere, in its own work or at a shared resource.
          const x = r.iops / 1e9;
          const inSystem = x * (total - tree - inval) + x * (r.resources["iova-tree-lock"].holdNs + r.resources["iova-tree-lock"].waitNs) + x * (r.resources["inval-queue"].holdNs + r.resources["inval-queue"].waitNs);
          expect(inSystem).toBeCloseTo(cpus, 6);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("refuses nonsense with every issue", () => {
    expect(() => modelThroughput({ cpus: 0, report: report(NaN), ios: 1.5, deviceIops: -1 })).toThrow(DmaConfigError);
    try {
      modelThroughput({ cpus: 0, report: report(NaN), ios: 1.5, deviceIops: -1 });
    } catch (e) {
      expect((e as { issues: { path: string }[] }).issues.map((i) => i.path)).toEqual(["cpus", "ios", "report.totalNs", "deviceIops"]);
    }
  });

  it("priced runs: strict unmaps queue on the invalidation queue, lazy ones mostly do not", () => {
    const perIo = (mode: IommuMode): ReturnType<typeof modelThroughput> => {
      const r = rig({ kernel: { iommuMode: mode, costProfile: "vtd" } });
      const phys = freshPages(r.platform, 1);
      const since = r.platform.trace.counters.snapshot();
      const ios = 1000;
      for (let i = 0; i < ios; i++) {
        const addr = dmaMapPhys(r.dev, unsafePhysAddr(phys), PAGE_SIZE, DmaDirection.FROM_DEVICE);
        expect(dmaMappingError(r.dev, addr)).toBe(0);
        dmaUnmapPhys(r.dev, addr, PAGE_SIZE, DmaDirection.FROM_DEVICE);
      }
      return modelThroughput({ cpus: 32, report: r.kernel.costs(since), ios, baseNs: 1000 });
    };
    const strict = perIo("strict");
    const lazy = perIo("lazy");
    expect(strict.bottleneck).toBe("inval-queue");
    expect(strict.resources["inval-queue"].waitNs).toBeGreaterThan(strict.resources["inval-queue"].holdNs);
    expect(lazy.resources["inval-queue"].holdNs).toBeLessThan(strict.resources["inval-queue"].holdNs / 10);
    expect(lazy.iops).toBeGreaterThan(5 * strict.iops);
  });
});
