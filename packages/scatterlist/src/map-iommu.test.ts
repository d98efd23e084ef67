import { describe, expect, it } from "vitest";
import { DmaDirection } from "@dmasim/dma";
import { PAGE_SIZE } from "@dmasim/memory";
import { Counter } from "@dmasim/dma";
import { dmaMapSg, dmaMapSgtable, dmaUnmapSg, dmaUnmapSgtable, sgDmaLen, sgtableDmaSegments } from "./index.js";
import type { SgMapOptions } from "./index.js";
import { deviceRead, firstBadSegment, listOf, makeRig } from "./test-fixtures.js";
import type { EntryDesc, RigOptions } from "./test-fixtures.js";
import { iova } from "@dmasim/iommu";

const IMPLS: readonly [string, SgMapOptions][] = [
  ["classic", { impl: "classic" }],
  ["two-step/widen", { impl: "two-step", interior: "widen" }],
  ["two-step/split", { impl: "two-step", interior: "split" }],
];

function mapped(entries: readonly EntryDesc[], options: SgMapOptions, rigOptions: RigOptions = {}) {
  const rig = makeRig(rigOptions);
  const table = listOf(rig, entries);
  const before = rig.platform.trace.counters.snapshot();
  expect(dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE, 0, options)).toBe(0);
  const moved = rig.platform.trace.counters.snapshot().diff(before);
  return { rig, table, moved, segs: sgtableDmaSegments(table) };
}

const page = (n = 1): EntryDesc => ({ len: n * PAGE_SIZE });

describe("iommu-dma dma_map_sg: the segments __finalise_sg gives", () => {
  for (const [name, options] of IMPLS) {
    it(`${name}: aligned pages merge into one IOVA-contiguous segment that maps each page`, () => {
      const { rig, table, segs } = mapped([page(), page(), page(), page()], options);
      expect(segs.map(([, l]) => l)).toEqual([4 * PAGE_SIZE]);
      const [addr] = segs[0] ?? [0];
      for (let i = 0; i < 4; i++) expect(rig.dev.domain?.iovaToPhys(iova(addr + i * PAGE_SIZE))).toBe(table.phys[i]);
      expect(firstBadSegment(rig, table)).toBe(-1);
      dmaUnmapSgtable(rig.dev, table, DmaDirection.TO_DEVICE);
      expect(rig.dev.domain?.mappedBytes).toBe(0);
      // The IOTLB was invalidated too: the device can no longer read the list.
      expect(deviceRead(rig.ep, addr, 16)).toBe("iommu-fault");
    });

    it(`${name}: an unaligned interior entry is its own segment, and closes the one before the next`, () => {
      const { rig, table, segs } = mapped([page(), { offset: 512, len: 1000 }, page()], options);
      expect(segs.map(([, l]) => l)).toEqual([PAGE_SIZE, 1000, PAGE_SIZE]);
      expect((segs[1]?.[0] ?? 0) % PAGE_SIZE).toBe(512);
      expect(firstBadSegment(rig, table)).toBe(-1);
    });

    it(`${name}: max_seg_size cuts merged segments`, () => {
      const { rig, table, segs } = mapped([page(), page(), page(), page(), page()], options, { device: { maxSegmentSize: 2 * PAGE_SIZE } });
      expect(segs.map(([, l]) => l)).toEqual([8192, 8192, 4096]);
      expect(firstBadSegment(rig, table)).toBe(-1);
    });

    it(`${name}: no segment crosses the segment boundary`, () => {
      const { rig, table, segs } = mapped([page(), page(), page(), page(2)], options, { device: { segBoundaryMask: 4 * PAGE_SIZE - 1 } });
      // Three pages fill 12 KiB of a 16 KiB window; the 8 KiB entry would cross it, so upstream pads.
      expect(segs.map(([, l]) => l)).toEqual([3 * PAGE_SIZE, 2 * PAGE_SIZE]);
      for (const [a, l] of segs) expect(Math.floor(a / 16384)).toBe(Math.floor((a + l - 1) / 16384));
      expect(firstBadSegment(rig, table)).toBe(-1);
    });
  }

  it("classic pads inside one IOVA and maps the padding to the memory after the entry; two-step opens a second IOVA", () => {
    const list = [page(), page(), page(), page(2)];
    const dev = { segBoundaryMask: 4 * PAGE_SIZE - 1 };
    const classic = mapped(list, { impl: "classic" }, { device: dev });
    const twoStep = mapped(list, { impl: "two-step" }, { device: dev });
    expect(classic.moved.get(Counter.PteWrites)).toBe(6);
    expect(twoStep.moved.get(Counter.PteWrites)).toBe(5);
    expect(classic.moved.get(Counter.IovaAllocCache) + classic.moved.get(Counter.IovaAllocTree)).toBe(1);
    expect(twoStep.moved.get(Counter.DmaIovaTryAllocs)).toBe(2);
    expect(twoStep.moved.get(Counter.DmaIovaSyncs)).toBe(2);
    // The padded third entry: the granule after it in the IOVA reaches the page after it in memory.
    const [a0] = classic.segs[0] ?? [0];
    expect(classic.rig.dev.domain?.iovaToPhys(iova(a0 + 3 * PAGE_SIZE))).toBe((classic.table.phys[2] ?? 0) + PAGE_SIZE);
  });

  it("two-step/widen keeps one IOVA for unaligned entries; split pays one IOVA and one sync per aligned run", () => {
    const list = [page(), { offset: 512, len: 1000 }, page(), { offset: 100, len: 200 }];
    const widen = mapped(list, { impl: "two-step", interior: "widen" });
    const split = mapped(list, { impl: "two-step", interior: "split" });
    const classic = mapped(list, { impl: "classic" });
    for (const m of [widen, split, classic]) expect(m.segs.map(([, l]) => l)).toEqual([4096, 1000, 4096, 200]);
    expect(widen.moved.get(Counter.DmaIovaTryAllocs)).toBe(1);
    expect(widen.moved.get(Counter.IotlbSyncMap)).toBe(1);
    expect(widen.moved.get(Counter.PteWrites)).toBe(classic.moved.get(Counter.PteWrites));
    // Runs: [page] [512+1000] [page] [100+200]: every unaligned edge starts a new dma_iova_state.
    expect(split.moved.get(Counter.DmaIovaTryAllocs)).toBe(4);
    expect(split.moved.get(Counter.IotlbSyncMap)).toBe(4);
    expect(split.moved.get(Counter.DmaBookkeepingBytesAllocated)).toBe(4 * 16);
  });

  it("one link per physically contiguous run, one try_alloc, one sync", () => {
    const rig = makeRig();
    const base = rig.platform.memory.allocator.allocPages(8);
    const table = listOf(rig, [{ phys: base, len: PAGE_SIZE }, { phys: base + PAGE_SIZE, len: PAGE_SIZE }, { phys: base + 2 * PAGE_SIZE, len: PAGE_SIZE }, page(), page()]);
    const before = rig.platform.trace.counters.snapshot();
    expect(dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE)).toBe(0);
    const d = rig.platform.trace.counters.snapshot().diff(before);
    expect(d.get(Counter.DmaIovaTryAllocs)).toBe(1);
    expect(d.get(Counter.DmaIovaLinks)).toBe(3);
    expect(d.get(Counter.DmaIovaSyncs)).toBe(1);
    expect(d.get(Counter.IotlbSyncMap)).toBe(1);
    expect(sgtableDmaSegments(table).map(([, l]) => l)).toEqual([5 * PAGE_SIZE]);
    expect(firstBadSegment(rig, table)).toBe(-1);
  });

  it("dmaMapSg returns the segment count and leaves nents alone; unmap takes the nents that were passed", () => {
    const rig = makeRig();
    const table = listOf(rig, [page(), page(), { offset: 8, len: 8 }]);
    expect(dmaMapSg(rig.dev, table, 3, DmaDirection.FROM_DEVICE)).toBe(2);
    expect(table.nents).toBe(3);
    expect(sgDmaLen(table, 2)).toBe(0);
    dmaUnmapSg(rig.dev, table, 3, DmaDirection.FROM_DEVICE);
    expect(rig.dev.domain?.mappedBytes).toBe(0);
    expect(table.mapped).toBe(false);
  });

  it("lazy mode: PTEs go at unmap, the IOVA after the flush queue drains", () => {
    const rig = makeRig({ kernel: { iommuMode: "lazy" } });
    const iovad = rig.dev.cookie?.iovad;
    const ranges = iovad?.liveRanges ?? 0;
    const table = listOf(rig, [page(), page(), page()]);
    expect(dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE)).toBe(0);
    const before = rig.platform.trace.counters.snapshot();
    dmaUnmapSgtable(rig.dev, table, DmaDirection.TO_DEVICE);
    const d = rig.platform.trace.counters.snapshot().diff(before);
    expect(rig.dev.domain?.mappedBytes).toBe(0);
    expect(d.get(Counter.IotlbInvalRange)).toBe(0);
    expect(d.get(Counter.FlushQueueEntries)).toBe(1);
    rig.kernel.flushAll();
    iovad?.flushRcaches();
    expect(iovad?.liveRanges).toBe(ranges);
  });
});
