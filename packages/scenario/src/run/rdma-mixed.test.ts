import { describe, expect, it } from "vitest";
import { builtinScenario } from "../builtins.js";
import { ScenarioError } from "../errors.js";
import { validateScenario } from "../validate.js";
import { runScenario } from "./index.js";

describe("rdma-odp mixed-mr: one MR over user VA and dma-bufs (dmasim's proposal)", () => {
  it("every source invalidates its own slice; bytes, stale entries, revokes and per-source latencies check out, strict and lazy", () => {
    const s = builtinScenario("odp-mixed-mr");
    if (s === undefined) throw new Error("no built-in odp-mixed-mr");
    for (const iommu of ["strict", "lazy"] as const) {
      const r = runScenario(s, { api: "two-step", iommu });
      expect(r.checks.filter((c) => !c.ok)).toEqual([]);
      expect(r.checks.map((c) => c.name)).toEqual(
        expect.arrayContaining(["every byte verified", "every work request completed", "no fault left", "nothing leaked", "no stale MTT entry", "revoked and unmapped slices refused, the rest served", "each source invalidated its own slice", "the mixed MR left nothing", "nothing left mapped", "batched variant"]),
      );
      expect(r.mapped.join("\n")).toContain("gpu-vram ×64");
      expect(r.mapped.join("\n")).toContain("vfio-bar ×16");
      for (const src of ["mm", "gpu", "vfio"]) {
        expect(r.metrics[`${src}Events`]).toBeGreaterThan(0);
        expect(r.metrics[`${src}QuiescenceMaxNs`]).toBeGreaterThan(0);
        expect(r.metrics[`${src}FirstDmaMaxNs`]).toBeGreaterThan(0);
      }
      // A GPU move's first DMA waits for the copy's KERNEL fence: longer than the zap alone.
      expect(r.metrics.gpuFirstDmaMaxNs).toBeGreaterThan(r.metrics.gpuQuiescenceMaxNs ?? 0);
      expect(r.metrics.expectedFaultErrors).toBeGreaterThanOrEqual(3);
    }
  });

  it("without the dma-buf devices, or with a device that has no BAR 1, the run fails its set-up check instead of throwing", () => {
    const s = builtinScenario("odp-mixed-mr");
    if (s?.workload.kind !== "rdma-odp") throw new Error("no built-in odp-mixed-mr");
    const { gpuVram: _g, ...noGpu } = s.workload;
    const r = runScenario({ ...s, workload: noGpu }, { api: "two-step", iommu: "strict" });
    expect(r.ok).toBe(false);
    expect(r.checks.find((c) => c.name === "mixed MR set up")?.ok).toBe(false);
    const r2 = runScenario({ ...s, workload: { ...s.workload, vfioBar: "0000:02:00.0" } }, { api: "two-step", iommu: "strict" });
    expect(r2.ok).toBe(false);
    expect(r2.checks.find((c) => c.name === "mixed MR set up")?.ok).toBe(false);
  });

  it("validation: the dma-buf exporters belong to mixed-mr only, and must be on the platform", () => {
    const h = builtinScenario("odp-hodgepodge");
    const m = builtinScenario("odp-mixed-mr");
    if (h?.workload.kind !== "rdma-odp" || m?.workload.kind !== "rdma-odp") throw new Error("no built-ins");
    expect(() => validateScenario({ ...h, workload: { ...h.workload, gpuVram: "0000:03:00.0" } })).toThrow(/gpuVram .*only the mixed-mr test/);
    expect(() => validateScenario({ ...m, workload: { ...m.workload, vfioBar: "0000:09:00.0" } })).toThrow(ScenarioError);
    expect(validateScenario(JSON.parse(JSON.stringify(m)) as unknown)).toEqual(m);
  });
});
