// The README's ```ts blocks, read from README.md and run as written, so they cannot rot.
import * as memoryModule from "@dmasim/memory";
import type { PhysicalMemory } from "@dmasim/memory";
import * as p2pModule from "@dmasim/pcie-p2p";
import * as traceModule from "@dmasim/trace";
import { describe, expect, it } from "vitest";
import { runReadmeBlock } from "../../../scripts/readme-example.js";
import { CpuCache } from "./cache/index.js";
import { DmaDirection } from "./constants.js";
import * as dmaModule from "./index.js";
import type { CostReport, DmaIovaState, DmaKernel } from "./index.js";
import * as iovaModule from "./iova/index.js";
import { SwiotlbPool, swiotlbPoolMapSingle, swiotlbPoolUnmapSingle } from "./swiotlb/index.js";
import { physAddr } from "@dmasim/memory";
import { iova } from "@dmasim/iommu";

const README = new URL("../README.md", import.meta.url);
const modules = {
  "@dmasim/memory": memoryModule,
  "@dmasim/pcie-p2p": p2pModule,
  "@dmasim/trace": traceModule,
  "@dmasim/dma": dmaModule,
  "./iova/index.js": iovaModule,
};

describe("README examples", () => {
  it("the two-step flow: one sync, 16 PTEs, nothing left mapped", () => {
    const r = runReadmeBlock(README, modules, { index: 0 });
    const costs = r.costs as CostReport;
    expect(costs.counters).toMatchObject({ PteWrites: 16, IotlbSyncMap: 1, DmaIovaTryAllocs: 1, DmaIovaDestroys: 1 });
    expect((r.kernel as DmaKernel).devices()[0]?.domain?.iovaToPhys(iova((r.state as DmaIovaState).addr))).toBeUndefined(); // unmapped
  });

  it("fault injection: configured at creation, armed later", () => {
    const platform = p2pModule.createPlatform({ memory: { ramBytes: memoryModule.GiB }, iommu: {}, endpoints: [{ bdf: "0000:01:00.0" }] });
    const scope = { createDmaKernel: dmaModule.createDmaKernel, platform, FAIL_SWIOTLB: dmaModule.FAIL_SWIOTLB };
    const r = runReadmeBlock(README, modules, { index: 1, scope });
    const kernel = r.kernel as DmaKernel;
    expect(kernel.faultInjection.attr(dmaModule.FAIL_IOVA).armed).toBe(true);
    expect(kernel.faultInjection.attr(dmaModule.FAIL_SWIOTLB).armed).toBe(true);
    expect(r.injected).toEqual({});
  });

  it("the IOVA allocator and flush queue", () => {
    const r = runReadmeBlock(README, modules, { index: 2 });
    expect(r.iova).toBe(0xffffe000);
    expect(r.queued).toBe(1);
    expect(r.released).toEqual(["pt-pages"]);
    expect(r.reused).toBe(true);
  });

  it("swiotlb: the bounce keeps the in-page offset and copies back on unmap", () => {
    const scope = { SwiotlbPool, swiotlbPoolMapSingle, swiotlbPoolUnmapSingle, DmaDirection };
    const r = runReadmeBlock(README, modules, { index: 3, scope });
    const memory = r.memory as PhysicalMemory;
    const tlb = r.tlb as number;
    expect(tlb & 0xfff).toBe(0x234);
    expect(new TextDecoder().decode(memory.read(physAddr(0x2000_0234), 5))).toBe("HELLO");
  });

  it("the CPU cache: the device sees a CPU store only after the sync", () => {
    const r = runReadmeBlock(README, modules, { index: 4, scope: { CpuCache, DmaDirection } });
    expect((r.memory as PhysicalMemory).read(physAddr(0x10000), 1)[0]).toBe(0xab);
  });
  it("cost profiles and CPUs: strict unmaps on 32 CPUs queue on VT-d's invalidation queue", () => {
    const r = runReadmeBlock(README, modules, { index: 5 });
    const one = r.oneCpu as dmaModule.ThroughputResult;
    const many = r.manyCpus as dmaModule.ThroughputResult;
    expect(one.bottleneck).toBe("cpu");
    expect(many.bottleneck).toBe("inval-queue");
    expect(many.iops).toBeLessThanOrEqual(1e9 / dmaModule.costProfiles.vtd.IotlbInvalRange!.shared!.ns + 1e-6);
    expect(many.iops).toBeGreaterThan(1.2e6);
    expect(many.iops).toBeLessThan(0.1 * 32 * one.iops);
  });
});
