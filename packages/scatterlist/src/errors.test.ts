import { describe, expect, it } from "vitest";
import { DmaDirection, Errno } from "@dmasim/dma";
import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import { Counter } from "@dmasim/dma";
import { FAIL_IO_PGTABLE } from "@dmasim/iommu";
import { ScatterlistBusyError, ScatterlistError, dmaMapSg, dmaMapSgtable, dmaUnmapSgtable, sgFreeTable, sgSetPhys } from "./index.js";
import type { SgMapOptions } from "./index.js";
import { listOf, makeRig } from "./test-fixtures.js";
import type { Rig } from "./test-fixtures.js";

function snapshot(rig: Rig): { mapped: number; ranges: number; slots: number; states: number } {
  return {
    mapped: rig.dev.domain?.mappedBytes ?? 0,
    // IOVAs freed into the per-CPU range caches stay in the tree until the caches are flushed.
    ranges: (rig.dev.cookie?.iovad.flushRcaches(), rig.dev.cookie?.iovad.liveRanges ?? 0),
    slots: rig.kernel.swiotlb?.stats.used ?? 0,
    states: rig.kernel.iovaTracker.liveCount(rig.dev.bdf),
  };
}

describe("failures leave nothing mapped and nothing leaked", () => {
  // A 64 KiB IOVA space (16-bit mask, IOVA 0 reserved): room for one 8-page IOVA, not for two.
  const tight = { device: { dmaMaskBits: 16 } };
  const list = [{ len: 8 * PAGE_SIZE - 100 }, { len: 8 * PAGE_SIZE }];

  for (const options of [{ impl: "classic" }, { impl: "two-step", interior: "widen" }, { impl: "two-step", interior: "split" }] as SgMapOptions[]) {
    it(`${options.impl}/${options.interior ?? "-"}: IOVA space exhausted → -ENOMEM (dmaMapSg: 0)`, () => {
      const rig = makeRig(tight);
      const table = listOf(rig, list);
      const before = snapshot(rig);
      expect(dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE, 0, options)).toBe(-Errno.ENOMEM);
      expect(dmaMapSg(rig.dev, table, 2, DmaDirection.TO_DEVICE, 0, options)).toBe(0);
      expect(snapshot(rig)).toEqual(before);
      expect(table.mapped).toBe(false);
      expect(Array.from(table.dmaLength)).toEqual([0, 0]);
    });
  }

  it("two-step/split: the second IOVA fails after the first was linked and synced: the first is destroyed", () => {
    const rig = makeRig(tight);
    const table = listOf(rig, list);
    const before = snapshot(rig);
    const c0 = rig.platform.trace.counters.snapshot();
    expect(dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE, 0, { interior: "split" })).toBe(-Errno.ENOMEM);
    const d = rig.platform.trace.counters.snapshot().diff(c0);
    expect(d.get(Counter.DmaIovaTryAllocs)).toBe(2);
    expect(d.get(Counter.PteWrites)).toBe(8);
    expect(d.get(Counter.DmaIovaDestroys)).toBe(1);
    expect(d.get(Counter.DmaMappingErrors)).toBe(1);
    expect(snapshot(rig)).toEqual(before);
    // With room for both, the same list maps.
    const roomy = makeRig({ device: { dmaMaskBits: 17 } });
    expect(dmaMapSgtable(roomy.dev, listOf(roomy, list), DmaDirection.TO_DEVICE, 0, { interior: "split" })).toBe(0);
  });

  it("classic: iommu_map of the second run cannot allocate a page table → -ENOMEM, the first run unmapped through the device's gather", () => {
    // Two physically separate 2 MiB entries: two iommu_map calls, the second into a leaf table of its
    // own. A rig that maps the list counts the tables both runs link; this one lets all but the last through.
    const list = [{ len: 2 * 1024 * 1024 }, { len: 2 * 1024 * 1024 }];
    const big = { device: { maxSegmentSize: 4 * 1024 * 1024 } };
    const probe = makeRig(big);
    const p0 = probe.platform.trace.counters.snapshot();
    expect(dmaMapSgtable(probe.dev, listOf(probe, list), DmaDirection.TO_DEVICE, 0, { impl: "classic" })).toBe(0);
    const tables = probe.platform.trace.counters.snapshot().diff(p0).get(Counter.PtPagesAllocated);
    expect(tables).toBeGreaterThan(1);

    const rig = makeRig(big);
    const table = listOf(rig, list);
    const domain = rig.dev.domain;
    if (domain === undefined) throw new Error("the rig's device has no IOMMU domain");
    const before = snapshot(rig);
    const ptPages = domain.ptPages;
    rig.platform.trace.faults.attr(FAIL_IO_PGTABLE).configure({ probability: 100, times: 1, space: (tables - 1) * 4096 + 1 });
    const c0 = rig.platform.trace.counters.snapshot();
    expect(dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE, 0, { impl: "classic" })).toBe(-Errno.ENOMEM);
    const d = rig.platform.trace.counters.snapshot().diff(c0);
    expect(rig.platform.trace.faults.attr(FAIL_IO_PGTABLE).injected).toBe(1);
    // The first run was mapped (one 2 MiB leaf or 512 4 KiB ones), then cleared again.
    expect(d.get(Counter.PteWrites)).toBeGreaterThan(0);
    expect(d.get(Counter.PteClears)).toBe(d.get(Counter.PteWrites));
    // iommu_unmap: the detached tables freed by the sync, none left waiting; the range invalidated.
    expect(d.get(Counter.PtPagesPendingFree)).toBe(d.get(Counter.PtPagesFreed));
    expect(domain.ptPagesPending).toBe(0);
    expect(d.get(Counter.IotlbInvalRange)).toBeGreaterThanOrEqual(1);
    expect(rig.dev.cookie?.iotlbGather.empty).toBe(true);
    expect(domain.ptPages).toBeGreaterThanOrEqual(ptPages);
    expect(snapshot(rig)).toEqual(before);
    expect(table.mapped).toBe(false);
    // Nothing is reachable at the IOVA the list had: the next map of the same list takes it and works.
    expect(dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE, 0, { impl: "classic" })).toBe(0);
  });

  it("untrusted device: swiotlb cannot take the third entry → -EIO, the two bounced before are unmapped", () => {
    // Untrusted devices bounce every entry that is not granule-aligned; the pool (256 KiB, the minimum of
    // 128 slots) holds the first two entries, not the third.
    const rig = makeRig({ untrusted: true, kernel: { swiotlb: { bytes: 256 * 1024 } }, device: { maxSegmentSize: 128 * 1024 } });
    const table = listOf(rig, [{ offset: 1, len: 100 * 1024 }, { offset: 3, len: 100 * 1024 }, { offset: 5, len: 100 * 1024 }]);
    const before = snapshot(rig);
    const c0 = rig.platform.trace.counters.snapshot();
    expect(dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE)).toBe(-Errno.EIO);
    const d = rig.platform.trace.counters.snapshot().diff(c0);
    expect(d.get(Counter.SwiotlbSlotsAllocated)).toBeGreaterThan(0);
    expect(d.get(Counter.SwiotlbAllocFail)).toBe(1);
    expect(snapshot(rig)).toEqual(before);
    expect(table.mapped).toBe(false);
  });

  it("dma-direct with swiotlb=force: the pool runs out half-way → -EIO, earlier bounces released", () => {
    const rig = makeRig({ kernel: { iommuMode: "off", swiotlb: { bytes: 256 * 1024, force: true } }, device: { maxSegmentSize: 128 * 1024 } });
    const table = listOf(rig, [{ len: 100 * 1024 }, { len: 100 * 1024 }, { len: 100 * 1024 }]);
    expect(dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE)).toBe(-Errno.EIO);
    expect(rig.kernel.swiotlb?.stats.used).toBe(0);
    expect(table.mapped).toBe(false);
  });
});

describe("bad input: a ScatterlistError, nothing changed", () => {
  it("refuses bad nents, direction, attrs, options, empty entries, double maps and freeing a mapped table", () => {
    const rig = makeRig();
    const table = listOf(rig, [{ len: PAGE_SIZE }, { len: PAGE_SIZE }]);
    const empty = listOf(rig, [{ len: PAGE_SIZE }, { len: 1 }]);
    sgSetPhys(empty, 1, unsafePhysAddr(0x10000), 0);
    const c0 = rig.platform.trace.counters.snapshot();
    expect(() => dmaMapSg(rig.dev, table, 0, DmaDirection.TO_DEVICE)).toThrow(/nents = 0x0 is invalid: expected 1 to the table's 2 entries/);
    expect(() => dmaMapSg(rig.dev, table, 3, DmaDirection.TO_DEVICE)).toThrow(ScatterlistError);
    expect(() => dmaMapSgtable(rig.dev, table, DmaDirection.NONE)).toThrow(/dir = 0x3/);
    expect(() => dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE, 1 << 20)).toThrow(/attrs/);
    expect(() => dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE, 0, { impl: "fast" as "classic" })).toThrow(/options.impl = "fast"/);
    expect(() => dmaMapSgtable(rig.dev, empty, DmaDirection.TO_DEVICE)).toThrow(/entry 1 length = 0x0/);
    expect(rig.platform.trace.counters.snapshot().diff(c0).nonZero()).toEqual({});
    expect(dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE)).toBe(0);
    const mapped = rig.dev.domain?.mappedBytes;
    expect(() => dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE)).toThrow(/already mapped/);
    expect(() => { sgFreeTable(table); }).toThrow(/still mapped/);
    expect(() => { sgFreeTable(table); }).toThrow(ScatterlistBusyError);
    expect(() => { sgFreeTable(table); }).toThrow(ScatterlistError);
    expect(() => { sgFreeTable(table); }).toThrow(expect.objectContaining({ code: "EBUSY", fn: "sg_free_table" }) as Error);
    expect(() => { sgSetPhys(table, 0, unsafePhysAddr(0x1000), 1); }).toThrow(/mapped table/);
    expect(rig.dev.domain?.mappedBytes).toBe(mapped);
    const other = rig.kernel.device("0000:05:00.0");
    expect(() => { dmaUnmapSgtable(other, table, DmaDirection.TO_DEVICE); }).toThrow(/the device the table was mapped for/);
    dmaUnmapSgtable(rig.dev, table, DmaDirection.TO_DEVICE);
    sgFreeTable(table);
    expect(() => dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE)).toThrow(/freed/);
  });
});
