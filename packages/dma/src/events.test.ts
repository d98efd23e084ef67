import { describe, expect, it } from "vitest";
import { GiB } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import { createDmaKernel, DmaDirection, DmaIovaState, dmaIovaDestroy, dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc, dmaMappingError, dmaMapPhys, dmaUnmapPhys } from "./index.js";
import type { IommuMode } from "./index.js";
import type { TraceEvent } from "./events.js";
import { TRUSTED_BDF } from "./test-fixtures.js";

function setup(iommuMode: IommuMode) {
  const platform = createPlatform({ memory: { ramBytes: 4 * GiB }, iommu: {}, endpoints: [{ bdf: TRUSTED_BDF }] });
  const kernel = createDmaKernel(platform, { iommuMode });
  const dev = kernel.device(TRUSTED_BDF);
  const seen: TraceEvent[] = [];
  const off = kernel.trace.events.subscribe((e) => seen.push(e));
  return { platform, kernel, dev, seen, off };
}

const IOVA_EVENTS = new Set(["iova.alloc", "iova.free", "flush-queue.flush", "flush-queue.release", "iotlb.invalidate"]);

describe("IOVA allocation events", () => {
  it("the two-step path reports its allocation and the strict free after the invalidation", () => {
    const { platform, dev, seen, off } = setup("strict");
    const phys = platform.memory.allocator.allocPages(4);
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, state, phys, 4 * 4096)).toBe(true);
    dmaIovaLink(dev, state, phys, 0, 4 * 4096, DmaDirection.TO_DEVICE, 0);
    dmaIovaSync(dev, state, 0, 4 * 4096);
    dmaIovaDestroy(dev, state, 4 * 4096, DmaDirection.TO_DEVICE, 0);
    off();
    const got = seen.filter((e) => IOVA_EVENTS.has(e.type));
    expect(got.map((e) => e.type)).toEqual(["iova.alloc", "iotlb.invalidate", "iova.free"]);
    expect(got[0]).toMatchObject({ device: TRUSTED_BDF, iova: state.addr, size: 4 * 4096, path: "two-step" });
    expect(got[2]).toMatchObject({ device: TRUSTED_BDF, iova: state.addr, size: 4 * 4096, path: "two-step", queued: false });
  });

  it("a lazy classic unmap queues the IOVA; the timeout flush invalidates the domain and releases it", () => {
    const { platform, kernel, dev, seen, off } = setup("lazy");
    const phys = platform.memory.allocator.allocPages(1);
    const addr = dmaMapPhys(dev, phys, 4096, DmaDirection.FROM_DEVICE, 0);
    expect(dmaMappingError(dev, addr)).toBe(0);
    dmaUnmapPhys(dev, addr, 4096, DmaDirection.FROM_DEVICE, 0);
    kernel.trace.clock.advance(20_000_000);
    off();
    const got = seen.filter((e) => IOVA_EVENTS.has(e.type));
    expect(got.map((e) => e.type)).toEqual(["iova.alloc", "iova.free", "iotlb.invalidate", "flush-queue.release", "flush-queue.flush"]);
    expect(got[0]).toMatchObject({ iova: addr, size: 4096, path: "classic" });
    expect(got[1]).toMatchObject({ iova: addr, size: 4096, queued: true });
    expect(got[2]).toMatchObject({ scope: "domain" });
    expect(got[3]).toMatchObject({ device: TRUSTED_BDF, iova: addr, size: 4096 });
    expect(got[4]).toMatchObject({ device: TRUSTED_BDF, entries: 1, pending: 0, reason: "timeout" });
  });

  it("emits nothing and allocates nothing for the trace when nobody listens", () => {
    const { platform, kernel, dev, off } = setup("lazy");
    off();
    const phys = platform.memory.allocator.allocPages(1);
    const addr = dmaMapPhys(dev, phys, 4096, DmaDirection.FROM_DEVICE, 0);
    expect(dmaMappingError(dev, addr)).toBe(0);
    dmaUnmapPhys(dev, addr, 4096, DmaDirection.FROM_DEVICE, 0);
    expect(kernel.trace.events.active).toBe(false);
    expect(kernel.trace.events.events()).toEqual([]);
  });
});
