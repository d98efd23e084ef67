import { describe, expect, it } from "vitest";
import { GiB } from "@dmasim/memory";
import { PcieAccessError, createPlatform } from "@dmasim/pcie-p2p";
import { Counter } from "./counters.js";
import { createDmaKernel, DmaDirection, DmaIovaState, dmaIovaDestroy, dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc } from "./index.js";
import { TRUSTED_BDF } from "./test-fixtures.js";

describe("hello-world flow of the design", () => {
  it("the device reads memory at phys through the IOVA", () => {
    const platform = createPlatform({ memory: { ramBytes: 4 * GiB }, iommu: {}, endpoints: [{ bdf: TRUSTED_BDF }] });
    const kernel = createDmaKernel(platform, { iommuMode: "strict" });
    const dev = kernel.device(TRUSTED_BDF);
    const phys = platform.memory.allocator.allocPages(16);
    const len = 16 * 4096;
    const bytes = new Uint8Array(len).map((_, i) => (i * 7) & 0xff);
    platform.memory.write(phys, bytes);
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, state, phys, len)).toBe(true);
    expect(dmaIovaLink(dev, state, phys, 0, len, DmaDirection.BIDIRECTIONAL, 0)).toBe(0);
    expect(platform.trace.counters.get(Counter.IotlbSyncMap)).toBe(0);
    expect(dmaIovaSync(dev, state, 0, len)).toBe(0);
    expect(platform.trace.counters.get(Counter.IotlbSyncMap)).toBe(1);
    expect(platform.endpoint(TRUSTED_BDF).dmaRead(state.addr, len)).toEqual(bytes);
    dmaIovaDestroy(dev, state, len, DmaDirection.BIDIRECTIONAL, 0);
    expect(() => platform.endpoint(TRUSTED_BDF).dmaRead(state.addr, 64)).toThrow(PcieAccessError);
    expect(kernel.costs().counters).toMatchObject({ PteWrites: 16, IotlbSyncMap: 1 });
  });
});
