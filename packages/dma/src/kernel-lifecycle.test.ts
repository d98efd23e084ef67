import { describe, expect, it } from "vitest";
import { MiB, physAddr, unsafePhysAddr } from "@dmasim/memory";
import { DmasimStateError } from "@dmasim/trace";
import { dmaAllocCoherent } from "./coherent.js";
import { DMA_MAPPING_ERROR, DmaDirection } from "./constants.js";
import { DmaStateError } from "./errors.js";
import { createDmaKernel } from "./kernel.js";
import { dmaMapPhys, dmaMappingError, dmaUnmapPhys } from "./mapping.js";
import { DmaIovaState, dmaIovaTryAlloc } from "./two-step.js";
import { TRUSTED_BDF, UNTRUSTED_BDF, allocBuffer, makeKernel, tryDmaRead } from "./test-fixtures.js";

// One DMA kernel per platform: a second one would take over the platform's DMA observer and blind the
// first kernel's dma-debug and cache snooping. shutdown() gives the platform back.

describe("DmaKernel lifecycle", () => {
  it("a second DmaKernel on a platform that has one is refused (EBUSY) and the first keeps its observer", () => {
    const f = makeKernel();
    const observer = f.platform.dmaObserver;
    expect(observer).toBeDefined();
    const free = f.platform.memory.allocator.freeBytes;
    let err: unknown;
    try {
      createDmaKernel(f.platform);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DmaStateError);
    expect(err).toBeInstanceOf(DmasimStateError);
    expect((err as DmaStateError).code).toBe("EBUSY");
    // Refused before anything was allocated (no second swiotlb pool) and without touching the observer.
    expect(f.platform.memory.allocator.freeBytes).toBe(free);
    expect(f.platform.dmaObserver).toBe(observer);
  });

  it("the first kernel's two-step dma-debug still sees device accesses after a refused second kernel", () => {
    const f = makeKernel({ debug: "collect" });
    expect(() => createDmaKernel(f.platform)).toThrow(DmaStateError);
    const buf = allocBuffer(f.platform, 4096);
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(f.dev, state, unsafePhysAddr(buf.phys), 4096)).toBe(true);
    expect(f.kernel.iovaTracker.liveCount(TRUSTED_BDF)).toBe(1);
  });

  it("shutdown() of a clean kernel reports nothing left and lets a new kernel start on the platform", () => {
    const f = makeKernel();
    const buf = allocBuffer(f.platform, 4096);
    const addr = dmaMapPhys(f.dev, physAddr(buf.phys), 4096, DmaDirection.TO_DEVICE);
    expect(dmaMappingError(f.dev, addr)).toBe(0);
    dmaUnmapPhys(f.dev, addr, 4096, DmaDirection.TO_DEVICE);
    const freeBefore = f.platform.memory.allocator.freeBytes;
    const report = f.kernel.shutdown();
    expect(report.clean).toBe(true);
    expect(report.devices.map((d) => d.device)).toEqual([TRUSTED_BDF, UNTRUSTED_BDF]);
    expect(report.swiotlbMappings).toBe(0);
    // The swiotlb pool's 64 MiB went back to the page allocator.
    expect(f.platform.memory.allocator.freeBytes - freeBefore).toBe(64 * MiB);
    expect(f.platform.dmaObserver).toBeUndefined();
    expect(f.kernel.isShutDown).toBe(true);

    const k2 = createDmaKernel(f.platform, { swiotlb: { bytes: 4 * MiB } });
    const dev = k2.device(TRUSTED_BDF);
    const a2 = dmaMapPhys(dev, physAddr(buf.phys), 4096, DmaDirection.TO_DEVICE);
    expect(dmaMappingError(dev, a2)).toBe(0);
    expect(tryDmaRead(f.platform.endpoint(TRUSTED_BDF), a2, 4096)).toEqual(buf.bytes);
    dmaUnmapPhys(dev, a2, 4096, DmaDirection.TO_DEVICE);
  });

  it("shutdown() in throw mode reports leaked mappings, IOVA states and bounce slots instead of throwing", () => {
    const f = makeKernel();
    const buf = allocBuffer(f.platform, 4096);
    const leaked = dmaMapPhys(f.dev, physAddr(buf.phys), 4096, DmaDirection.TO_DEVICE);
    // The untrusted device bounces an unaligned 100-byte mapping through swiotlb.
    expect(dmaMapPhys(f.untrusted, physAddr(buf.phys + 8), 100, DmaDirection.TO_DEVICE)).not.toBe(DMA_MAPPING_ERROR);
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(f.dev, state, unsafePhysAddr(buf.phys), 4096)).toBe(true);
    expect(dmaAllocCoherent(f.dev, 8192)).toBeDefined();
    const report = f.kernel.shutdown();
    expect(report.clean).toBe(false);
    const trusted = report.devices.find((d) => d.device === TRUSTED_BDF);
    expect(trusted?.leakedMappings.map((e) => e.type).sort()).toEqual(["coherent", "phy"]);
    expect(trusted?.leakedIovaStates).toBe(1);
    expect(report.devices.find((d) => d.device === UNTRUSTED_BDF)?.leakedMappings).toHaveLength(1);
    expect(report.swiotlbMappings).toBe(1);
    expect(f.kernel.debugReports().map((r) => r.check)).toEqual(expect.arrayContaining(["leak", "iova-leak"]));
    // The domains are gone: the device's DMA to what was its IOVA is blocked.
    expect(tryDmaRead(f.platform.endpoint(TRUSTED_BDF), leaked, 4)).toBeInstanceOf(Error);
    expect(f.kernel.debug.mode).toBe("throw");
    expect(() => createDmaKernel(f.platform)).not.toThrow();
  });

  it("after shutdown() the kernel and its devices refuse every call", () => {
    const f = makeKernel();
    const buf = allocBuffer(f.platform, 4096);
    f.kernel.shutdown();
    expect(() => f.kernel.device(TRUSTED_BDF)).toThrow(DmaStateError);
    expect(() => f.kernel.shutdown()).toThrow(DmaStateError);
    expect(() => dmaMapPhys(f.dev, unsafePhysAddr(buf.phys), 4096, DmaDirection.TO_DEVICE)).toThrow(/bound device/);
  });

  it("shutdown() of a lazy kernel drains the flush queues so no timer of the old kernel fires later", () => {
    const f = makeKernel({ iommuMode: "lazy" });
    const buf = allocBuffer(f.platform, 4096);
    const addr = dmaMapPhys(f.dev, physAddr(buf.phys), 4096, DmaDirection.TO_DEVICE);
    expect(dmaMappingError(f.dev, addr)).toBe(0);
    dmaUnmapPhys(f.dev, addr, 4096, DmaDirection.TO_DEVICE);
    expect(f.dev.cookie?.fq?.timerDeadline).toBeDefined();
    f.kernel.shutdown();
    expect(f.dev.cookie?.fq?.timerDeadline).toBeUndefined();
  });
});
