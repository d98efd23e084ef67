import { MiB } from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import { createNvmeHost } from "./system.js";
import { prefillNamespace, runWorkload } from "./workload.js";

describe("the drive on any platform", () => {
  it("runs on a caller's platform spec, at its BDF, with the caller's kernel options", () => {
    const host = createNvmeHost(
      { memory: { ramBytes: 1024 * MiB }, endpoints: [{ bdf: "0000:41:00.0", bars: [{ size: 16 * 1024 }] }] },
      "0000:41:00.0",
      { iommuMode: "off", queueDepth: 4, namespaceBytes: MiB, kernel: { swiotlb: { bytes: MiB } } },
    );
    expect(host.driver.dev.bdf).toBe("0000:41:00.0");
    expect(host.platform.iommus).toHaveLength(0);
    expect(host.kernel.swiotlb?.stats.nslabs).toBe(MiB / 2048);
    const r = runWorkload(host, { ops: 50, readPct: 50, seed: 3 });
    expect(r.mismatches).toBe(0);
    expect(r.costs.counters.PteWrites ?? 0).toBe(0);
  });

  it("sequential order writes consecutive blocks, wrapping at the end of the namespace", () => {
    const host = createNvmeHost({ memory: { ramBytes: 1024 * MiB }, iommu: {}, endpoints: [{ bdf: "0000:01:00.0", bars: [{ size: 16 * 1024 }] }] }, "0000:01:00.0", {
      queueDepth: 4,
      namespaceBytes: 256 * 1024,
    });
    const gens = prefillNamespace(host);
    expect(gens.length).toBe(64);
    // 20 writes of 4 blocks: blocks 0..63 once (16 writes), then 0..15 again.
    runWorkload(host, { ops: 20, bsMin: 16 * 1024, readPct: 0, order: "sequential", queueDepth: 1 }, gens);
    expect(Array.from(gens.slice(0, 16))).toEqual(new Array<number>(16).fill(2));
    expect(Array.from(gens.slice(16))).toEqual(new Array<number>(48).fill(1));
  });

  it("rejects an unknown order naming the value", () => {
    const host = createNvmeHost({ memory: { ramBytes: 1024 * MiB }, iommu: {}, endpoints: [{ bdf: "0000:01:00.0", bars: [{ size: 16 * 1024 }] }] }, "0000:01:00.0", {
      queueDepth: 4,
      namespaceBytes: 256 * 1024,
    });
    expect(() => runWorkload(host, { ops: 1, order: "backwards" as "random" })).toThrow(/order = "backwards" is invalid: expected "random" or "sequential"/);
  });
});
