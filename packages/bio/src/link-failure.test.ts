import { DmaDirection, DmaIovaState, dmaMapPhys, dmaMappingError, dmaUnmapPhys, dmaAddr } from "@dmasim/dma";
import { PAGE_SIZE, physAddr } from "@dmasim/memory";
import { Counter } from "@dmasim/dma";
import { describe, expect, it } from "vitest";
import { BlkDmaIter, blkRqDmaMapIterStart } from "./dma-iter.js";
import { queueLimits } from "./limits.js";
import { Request } from "./request.js";
import { BLK_STS_RESOURCE } from "./status.js";
import { UNTRUSTED, WRITE, allocPages, bioOf, makeFixture } from "./test-fixtures.js";
import { iova } from "@dmasim/iommu";
import { unsafeDmaAddr } from "@dmasim/dma";

// A dma_iova_link that fails in the middle of a request. Upstream 6.17 overwrote the link's error with the
// result of the dma_iova_sync that followed and returned success with the IOVA half linked; dmasim must
// report the link's error and leave nothing behind.
describe("a link failure in the middle of a coalesced request", () => {
  it("destroys the partial IOVA and reports the link's error (swiotlb exhausted for an untrusted device)", () => {
    // An untrusted device bounces every partial granule. With the bounce pool used up, the second link
    // (a 512-byte tail that needs a bounce slot) fails with -ENOMEM after the first link succeeded.
    const f = makeFixture({ swiotlb: { bytes: 256 * 1024 } });
    const dev = f.untrusted;
    const filler = allocPages(f, 80, 7);
    const held: [number, number][] = [];
    for (let i = 0; i < 80; i++) {
      const addr = dmaMapPhys(dev, physAddr(filler + i * PAGE_SIZE + 512), 3072, DmaDirection.TO_DEVICE);
      if (dmaMappingError(dev, addr) !== 0) break;
      held.push([addr, 3072]);
    }
    expect(f.platform.trace.counters.get(Counter.SwiotlbAllocFail)).toBeGreaterThan(0);

    const a = allocPages(f, 1, 1);
    allocPages(f, 1, 9);
    const b = allocPages(f, 1, 2);
    const rq = Request.fromBios(queueLimits(), [bioOf(f, WRITE, 0, [[a, PAGE_SIZE], [b, 512]])]);
    const events = f.platform.trace.events;
    events.setRecording(true);
    events.clear();
    const mappedBefore = dev.domain!.mappedBytes;
    const before = f.platform.trace.counters.snapshot();

    const state = new DmaIovaState();
    const iter = new BlkDmaIter();
    expect(blkRqDmaMapIterStart(rq, dev, state, iter)).toBe(false);
    expect(iter.status).toBe(BLK_STS_RESOURCE); // -ENOMEM from the link, not 0 from a sync

    const moved = f.platform.trace.counters.snapshot().diff(before);
    expect(moved.get(Counter.DmaIovaTryAllocs)).toBe(1);
    expect(moved.get(Counter.DmaIovaLinks)).toBe(2);
    expect(moved.get(Counter.DmaIovaSyncs)).toBe(0);
    expect(moved.get(Counter.DmaIovaDestroys)).toBe(1);
    // The first link really mapped the page; after the failure nothing of it is left.
    const linked = events.events("iommu.map").map((e) => e.iova);
    expect(linked.length).toBeGreaterThan(0);
    expect(dev.domain!.mappedBytes).toBe(mappedBefore);
    for (const addr of linked) {
      expect(dev.domain!.iovaToPhys(iova(addr))).toBeUndefined();
      expect(() => f.platform.endpoint(UNTRUSTED).dmaRead(unsafeDmaAddr(addr), 64)).toThrow(/iommu-fault/);
    }
    expect(f.kernel.iovaTracker.liveCount(UNTRUSTED)).toBe(0);
    // The IOVA went back to the allocator (untrusted devices are strict: at once, no flush queue).
    expect(moved.get(Counter.IovaAllocCache) + moved.get(Counter.IovaAllocTree)).toBe(1);
    expect(moved.get(Counter.IovaFreeCache) + moved.get(Counter.IovaFreeTree)).toBe(1);
    expect(state.size).toBe(0);
    expect(rq.dmaBookkeeping).toBe(0);
    expect(moved.get(Counter.DmaBookkeepingBytesAllocated)).toBe(moved.get(Counter.DmaBookkeepingBytesFreed));

    // Once the pool has room again the same request maps and coalesces.
    for (const [addr, len] of held) dmaUnmapPhys(dev, dmaAddr(addr), len, DmaDirection.TO_DEVICE);
    expect(blkRqDmaMapIterStart(rq, dev, state, iter)).toBe(true);
    expect(iter.len).toBe(PAGE_SIZE + 512);
  });
});
