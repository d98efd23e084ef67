import { DMA_ATTR_MMIO, DmaIovaState, dmaUnmapPhys, dmaAddr } from "@dmasim/dma";
import { PAGE_SIZE, physAddr } from "@dmasim/memory";
import { PciP2pdmaMapType, PcieAccessError } from "@dmasim/pcie-p2p";
import { Counter } from "@dmasim/dma";
import { describe, expect, it } from "vitest";
import { DMA_IOVA_STATE_BYTES } from "@dmasim/dma";
import { BLK_DMA_ITER_BYTES, BlkDmaIter, DMA_VEC_BYTES, blkRqDmaMapCoalesce, blkRqDmaMapIterNext, blkRqDmaMapIterStart, blkRqDmaUnmap } from "./dma-iter.js";
import { queueLimits } from "./limits.js";
import { Request } from "./request.js";
import { BLK_STS_IOERR, BLK_STS_OK } from "./status.js";
import type { Fixture } from "./test-fixtures.js";
import { NVME, READ, WRITE, allocPages, bioOf, makeFixture, requestBytes } from "./test-fixtures.js";
import { iova } from "@dmasim/iommu";
import { unsafeDmaAddr } from "@dmasim/dma";

/** Maps `rq` completely; returns the segments and the final status. */
function mapAll(f: Fixture, rq: Request, state: DmaIovaState, iter: BlkDmaIter, dev = f.dev): { segs: [number, number][]; ok: boolean } {
  const segs: [number, number][] = [];
  if (!blkRqDmaMapIterStart(rq, dev, state, iter)) return { segs, ok: false };
  do segs.push([iter.addr, iter.len]);
  while (blkRqDmaMapIterNext(rq, dev, state, iter));
  return { segs, ok: iter.status === BLK_STS_OK };
}

function deviceRead(f: Fixture, segs: readonly [number, number][], bdf = NVME): Uint8Array {
  const ep = f.platform.endpoint(bdf);
  const total = segs.reduce((n, [, l]) => n + l, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const [a, l] of segs) {
    out.set(ep.dmaRead(unsafeDmaAddr(a), l), at);
    at += l;
  }
  return out;
}

const lim = queueLimits();

describe("blk_rq_dma_map_iter on iommu-dma", () => {
  it("coalesces granule-aligned gaps into one IOVA segment, linked per phys vec and synced once", () => {
    const f = makeFixture();
    const a = allocPages(f, 2, 1);
    allocPages(f, 1, 9); // spacers keep the ranges apart physically
    const b = allocPages(f, 3, 2);
    allocPages(f, 1, 9);
    const c = allocPages(f, 1, 3);
    // A write: the device reads memory (an IOMMU READ mapping).
    const bios = [bioOf(f, WRITE, 0, [[a + 512, PAGE_SIZE * 2 - 512], [b, PAGE_SIZE * 3], [c, 1024]])];
    const rq = Request.fromBios(lim, bios);
    const counters = f.platform.trace.counters;
    const links = counters.get(Counter.DmaIovaLinks);
    const syncs = counters.get(Counter.DmaIovaSyncs);
    const state = new DmaIovaState();
    const iter = new BlkDmaIter();
    const { segs, ok } = mapAll(f, rq, state, iter);
    expect(ok).toBe(true);
    expect(blkRqDmaMapCoalesce(state)).toBe(true);
    expect(segs).toEqual([[state.addr, rq.dataLen]]);
    expect(state.addr % PAGE_SIZE).toBe(512); // keeps the first vec's offset in its granule
    expect(counters.get(Counter.DmaIovaLinks) - links).toBe(3);
    expect(counters.get(Counter.DmaIovaSyncs) - syncs).toBe(1);
    expect(deviceRead(f, segs)).toEqual(requestBytes(f, bios));
    expect(rq.dmaBookkeeping).toBe(BLK_DMA_ITER_BYTES + DMA_IOVA_STATE_BYTES);
    expect(blkRqDmaUnmap(rq, f.dev, state, rq.dataLen, iter.p2pdma.map)).toBe(true);
    expect(f.dev.domain?.mappedBytes).toBe(0);
    expect(() => f.platform.endpoint(NVME).dmaRead(unsafeDmaAddr(segs[0]![0]), 4)).toThrow(/iommu-fault|fault/);
    expect(f.kernel.iovaTracker.liveCount(NVME)).toBe(0);
    expect(counters.get(Counter.DmaBookkeepingBytesAllocated)).toBe(counters.get(Counter.DmaBookkeepingBytesFreed));
  });

  it("maps each phys vec with dma_map_phys when a gap is not granule-aligned, merging contiguous bvecs", () => {
    const f = makeFixture();
    const a = allocPages(f, 4, 1);
    const b = allocPages(f, 1, 2);
    // a+0..a+1024 and a+1024..a+4096 are contiguous: one phys vec; then a gap at offset 512 of b.
    const bios = [bioOf(f, WRITE, 8, [[a, 1024], [a + 1024, 3072], [b + 512, 1024]])];
    const rq = Request.fromBios(lim, bios);
    expect(rq.physGapBit).toBe(10); // ffs(512 | 4096)
    const state = new DmaIovaState();
    const iter = new BlkDmaIter();
    const maps = f.platform.trace.counters.get(Counter.DmaMapCalls);
    const { segs, ok } = mapAll(f, rq, state, iter);
    expect(ok).toBe(true);
    expect(blkRqDmaMapCoalesce(state)).toBe(false);
    expect(segs.map(([, l]) => l)).toEqual([4096, 1024]);
    expect(f.platform.trace.counters.get(Counter.DmaMapCalls) - maps).toBe(2);
    expect(deviceRead(f, segs)).toEqual(requestBytes(f, bios));
    expect(rq.dmaBookkeeping).toBe(BLK_DMA_ITER_BYTES + DMA_IOVA_STATE_BYTES + 2 * DMA_VEC_BYTES);
    expect(blkRqDmaUnmap(rq, f.dev, state, rq.dataLen, iter.p2pdma.map)).toBe(false);
    for (const [addr, len] of segs) dmaUnmapPhys(f.dev, dmaAddr(addr), len, 1);
    expect(f.dev.domain?.mappedBytes).toBe(0);
  });

  it("splits a phys vec at max_segment_size and at the segment boundary", () => {
    // With dma-direct the DMA addresses are the physical ones, so the cut points are visible.
    const f = makeFixture({ iommuMode: "off" });
    const p = allocPages(f, 16, 1);
    const window = 16384;
    const start = Math.ceil(p / window) * window + 4096; // 4 KiB into a 16 KiB window
    const small = queueLimits({ maxSegmentSize: 8192, segBoundaryMask: window - 1 });
    const rq = Request.fromBios(small, [bioOf(f, WRITE, 0, [[start, 5 * 4096]])]);
    expect(rq.nrPhysSegments).toBe(3);
    const { segs } = mapAll(f, rq, new DmaIovaState(), new BlkDmaIter());
    // 8 KiB (size cap), 4 KiB (to the 16 KiB boundary), 8 KiB (size cap).
    expect(segs).toEqual([[start, 8192], [start + 8192, 4096], [start + 12288, 8192]]);
  });

  it("without an IOMMU hands out physical addresses and needs no unmap for a coherent device", () => {
    const f = makeFixture({ noIommu: true, debug: "off" });
    const a = allocPages(f, 2, 5);
    const rq = Request.fromBios(lim, [bioOf(f, READ, 0, [[a, 8192]])]);
    const state = new DmaIovaState();
    const iter = new BlkDmaIter();
    const { segs, ok } = mapAll(f, rq, state, iter);
    expect(ok).toBe(true);
    expect(segs).toEqual([[a, 8192]]);
    expect(blkRqDmaMapCoalesce(state)).toBe(false);
    expect(rq.dmaBookkeeping).toBe(BLK_DMA_ITER_BYTES + DMA_IOVA_STATE_BYTES); // no per-segment list needed
    expect(blkRqDmaUnmap(rq, f.dev, state, rq.dataLen, iter.p2pdma.map)).toBe(true);
  });

  it("merges contiguous bvecs across bios of one request", () => {
    const f = makeFixture({ iommuMode: "off" });
    const a = allocPages(f, 4, 1);
    const bios = [bioOf(f, READ, 0, [[a, 4096]]), bioOf(f, READ, 8, [[a + 4096, 8192]])];
    const rq = Request.fromBios(lim, bios);
    const { segs } = mapAll(f, rq, new DmaIovaState(), new BlkDmaIter());
    expect(segs).toEqual([[a, 12288]]);
  });

  it("lazy mode defers the IOTLB invalidation of the destroyed IOVA to the flush queue", () => {
    const f = makeFixture({ iommuMode: "lazy" });
    const a = allocPages(f, 1, 1);
    const rq = Request.fromBios(lim, [bioOf(f, WRITE, 0, [[a, 4096]])]);
    const state = new DmaIovaState();
    const iter = new BlkDmaIter();
    const { segs } = mapAll(f, rq, state, iter);
    deviceRead(f, segs); // fills the IOTLB
    const inval = f.platform.trace.counters.get(Counter.IotlbInvalRange);
    blkRqDmaUnmap(rq, f.dev, state, rq.dataLen, iter.p2pdma.map);
    expect(f.platform.trace.counters.get(Counter.IotlbInvalRange)).toBe(inval);
    expect(f.dev.domain?.iovaToPhys(iova(segs[0]![0]))).toBeUndefined();
    // Lazy mode's window: the stale IOTLB entry still translates until the flush queue runs.
    expect(deviceRead(f, segs)).toEqual(requestBytes(f, rq.bios));
    f.kernel.flushAll();
    expect(() => deviceRead(f, segs)).toThrow(PcieAccessError);
  });
});

describe("a max_segment_size cut inside a bvec", () => {
  // blk_map_iter_next cuts phys vecs at max_segment_size, but the request's gap bit only looks at bvec
  // boundaries: a long bvec that starts off a granule boundary is cut at an unaligned address, and the
  // IOVA path's second dma_iova_link refuses it (WARN, -EIO). dmasim reports it as the kernel would after
  // the link-error fix: BLK_STS_IOERR, the partial IOVA destroyed.
  it("fails the coalesced mapping with BLK_STS_IOERR and leaves nothing mapped", () => {
    const f = makeFixture({ debug: "collect" });
    const a = allocPages(f, 3, 1);
    const rq = Request.fromBios(queueLimits({ maxSegmentSize: 4096 }), [bioOf(f, WRITE, 0, [[a + 512, 4608]])]);
    expect(rq.physGapBit).toBe(0);
    const state = new DmaIovaState();
    const iter = new BlkDmaIter();
    expect(blkRqDmaMapIterStart(rq, f.dev, state, iter)).toBe(false);
    expect(iter.status).toBe(BLK_STS_IOERR);
    expect(f.kernel.debugReports().map((r) => r.check)).toContain("api-warn");
    expect(f.dev.domain?.mappedBytes).toBe(0);
    expect(f.kernel.iovaTracker.liveCount(NVME)).toBe(0);
    expect(rq.dmaBookkeeping).toBe(0);
  });
});

describe("blk_rq_dma_map_iter with P2P memory", () => {
  it("BUS_ADDR: bus addresses per segment, no IOMMU mapping, nothing to unmap", () => {
    const f = makeFixture();
    const p = f.viaSwitch;
    const bytes = new Uint8Array(8192).map((_, i) => (i * 3) & 0xff);
    f.platform.memory.write(p.phys, bytes);
    const rq = Request.fromBios(lim, [bioOf(f, READ, 0, [[p.phys, 4096], [p.phys + 4096, 4096]])]);
    const state = new DmaIovaState();
    const iter = new BlkDmaIter();
    const ptes = f.platform.trace.counters.get(Counter.PteWrites);
    const { segs, ok } = mapAll(f, rq, state, iter);
    expect(ok).toBe(true);
    expect(iter.p2pdma.map).toBe(PciP2pdmaMapType.BUS_ADDR);
    expect(segs).toEqual([[p.phys + p.busOffset, 8192]]);
    expect(f.platform.trace.counters.get(Counter.PteWrites)).toBe(ptes);
    expect(deviceRead(f, segs)).toEqual(bytes);
    expect(f.platform.trace.counters.get(Counter.TlpsPeerViaSwitch)).toBe(2);
    expect(blkRqDmaUnmap(rq, f.dev, state, rq.dataLen, iter.p2pdma.map)).toBe(true);
  });

  it("THRU_HOST_BRIDGE: one IOVA linked with MMIO attributes; the device reaches the peer BAR through the IOMMU", () => {
    const f = makeFixture();
    const p = f.viaHostBridge;
    const bytes = new Uint8Array(4096).map((_, i) => (i * 5) & 0xff);
    f.platform.memory.write(physAddr(p.phys + 8192), bytes);
    const rq = Request.fromBios(lim, [bioOf(f, WRITE, 0, [[p.phys + 8192, 4096]])]);
    const state = new DmaIovaState();
    const iter = new BlkDmaIter();
    const { segs, ok } = mapAll(f, rq, state, iter);
    expect(ok).toBe(true);
    expect(iter.p2pdma.map).toBe(PciP2pdmaMapType.THRU_HOST_BRIDGE);
    expect(blkRqDmaMapCoalesce(state)).toBe(true);
    expect(deviceRead(f, segs)).toEqual(bytes);
    expect(f.platform.trace.counters.get(Counter.TlpsPeerViaHostBridge)).toBe(1);
    expect(blkRqDmaUnmap(rq, f.dev, state, rq.dataLen, iter.p2pdma.map)).toBe(true);
    expect(f.dev.domain?.mappedBytes).toBe(0);
  });

  it("BUS_ADDR with gaps: one bus address per phys vec from iter_next, and P2P decided only once", () => {
    const f = makeFixture();
    const p = f.viaSwitch;
    const rq = Request.fromBios(lim, [bioOf(f, READ, 0, [[p.phys, 4096], [p.phys + 3 * 4096 + 512, 1024]])]);
    const state = new DmaIovaState();
    const iter = new BlkDmaIter();
    const lookups = f.platform.trace.counters.get(Counter.P2pStateLookups);
    const { segs } = mapAll(f, rq, state, iter);
    expect(segs).toEqual([
      [p.phys + p.busOffset, 4096],
      [p.phys + 3 * 4096 + 512 + p.busOffset, 1024],
    ]);
    expect(f.platform.trace.counters.get(Counter.P2pStateLookups) - lookups).toBe(1);
    expect(rq.dmaBookkeeping).toBe(BLK_DMA_ITER_BYTES + DMA_IOVA_STATE_BYTES);
  });

  it("THRU_HOST_BRIDGE with an in-page gap: dma_map_phys with DMA_ATTR_MMIO per phys vec, unmapped by the caller", () => {
    const f = makeFixture();
    const p = f.viaHostBridge;
    const bytes = new Uint8Array(2048).map((_, i) => (i * 11) & 0xff);
    f.platform.memory.write(physAddr(p.phys + 512), bytes.subarray(0, 1024));
    f.platform.memory.write(physAddr(p.phys + 8192 + 1024), bytes.subarray(1024));
    const rq = Request.fromBios(lim, [bioOf(f, WRITE, 0, [[p.phys + 512, 1024], [p.phys + 8192 + 1024, 1024]])]);
    const state = new DmaIovaState();
    const iter = new BlkDmaIter();
    const { segs } = mapAll(f, rq, state, iter);
    expect(blkRqDmaMapCoalesce(state)).toBe(false);
    expect(segs).toHaveLength(2);
    expect(deviceRead(f, segs)).toEqual(bytes);
    expect(blkRqDmaUnmap(rq, f.dev, state, rq.dataLen, iter.p2pdma.map)).toBe(false);
    for (const [addr, len] of segs) dmaUnmapPhys(f.dev, dmaAddr(addr), len, 1, DMA_ATTR_MMIO);
    expect(f.dev.domain?.mappedBytes).toBe(0);
  });

  it("NOT_SUPPORTED: start returns false with BLK_STS_INVAL and maps nothing", () => {
    const f = makeFixture();
    const rq = Request.fromBios(lim, [bioOf(f, READ, 0, [[f.far.phys, 4096]])]);
    const state = new DmaIovaState();
    const iter = new BlkDmaIter();
    const before = f.platform.trace.counters.snapshot();
    expect(blkRqDmaMapIterStart(rq, f.dev, state, iter)).toBe(false);
    expect(iter.status).toBe(19);
    const moved = f.platform.trace.counters.snapshot().diff(before);
    expect(moved.get(Counter.PteWrites)).toBe(0);
    expect(moved.get(Counter.DmaIovaTryAllocs)).toBe(0);
    expect(moved.get(Counter.DmaBookkeepingBytesAllocated)).toBe(moved.get(Counter.DmaBookkeepingBytesFreed));
    expect(rq.dmaBookkeeping).toBe(0);
  });
});

describe("trace events", () => {
  it("bracket the iterator calls with api slices, and the DMA calls they make nest inside", () => {
    const f = makeFixture();
    const a = allocPages(f, 1, 1);
    const rq = Request.fromBios(lim, [bioOf(f, WRITE, 0, [[a, 4096]])]);
    const state = new DmaIovaState();
    const iter = new BlkDmaIter();
    mapAll(f, rq, state, iter); // nobody listens: nothing recorded
    blkRqDmaUnmap(rq, f.dev, state, rq.dataLen, iter.p2pdma.map);
    const events = f.kernel.trace.events;
    expect(events.events("api")).toEqual([]);
    events.setRecording(true);
    mapAll(f, rq, state, iter);
    blkRqDmaUnmap(rq, f.dev, state, rq.dataLen, iter.p2pdma.map);
    const names = events.events("api").map((e) => `${e.phase} ${e.name}`);
    expect(names[0]).toBe("B blk_rq_dma_map_iter_start");
    expect(names).toContain("B dma_iova_link");
    expect(names.indexOf("E blk_rq_dma_map_iter_start")).toBeGreaterThan(names.indexOf("E dma_iova_sync"));
    expect(names.slice(-1)).toEqual(["E blk_rq_dma_unmap"]);
  });
});

describe("argument checks", () => {
  it("refuses what is not a request, device, state or iterator", () => {
    const f = makeFixture();
    const a = allocPages(f, 1);
    const rq = Request.fromBios(lim, [bioOf(f, READ, 0, [[a, 4096]])]);
    expect(() => blkRqDmaMapIterStart({} as unknown as Request, f.dev, new DmaIovaState(), new BlkDmaIter())).toThrow(/req .* expected a Request/);
    expect(() => blkRqDmaMapIterStart(rq, {} as unknown as typeof f.dev, new DmaIovaState(), new BlkDmaIter())).toThrow(/dma_dev/);
    expect(() => blkRqDmaUnmap(rq, f.dev, new DmaIovaState(), -1, PciP2pdmaMapType.NONE)).toThrow(/mapped_len/);
    expect(() => blkRqDmaUnmap(rq, f.dev, new DmaIovaState(), 0, 42 as PciP2pdmaMapType)).toThrow(/PciP2pdmaMapType/);
    expect(f.platform.trace.counters.get(Counter.DmaBookkeepingBytesAllocated)).toBe(0);
  });
});
