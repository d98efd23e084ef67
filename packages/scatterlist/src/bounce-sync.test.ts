import { describe, expect, it } from "vitest";
import { DmaDirection, unsafeDmaAddr, type DmaAddr } from "@dmasim/dma";
import { PAGE_SIZE, physAddr } from "@dmasim/memory";
import { Counter } from "@dmasim/dma";
import { dmaMapSgtable, dmaSyncSgtableForCpu, dmaSyncSgtableForDevice, dmaUnmapSgtable, sgDmaIsBounced, sgDmaIsSwiotlb, sgtableDmaSegments } from "./index.js";
import { firstBadSegment, firstDifference, listOf, makeRig, pattern } from "./test-fixtures.js";
import type { PhysAddr } from "@dmasim/memory";

describe("untrusted devices: every entry through swiotlb, one DMA segment each", () => {
  it("flags the list and the bounced entries; the device reads the data from the slots", () => {
    const rig = makeRig({ untrusted: true });
    const table = listOf(rig, [{ len: PAGE_SIZE }, { offset: 100, len: 300 }, { len: 2 * PAGE_SIZE }]);
    expect(dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE)).toBe(0);
    // No merging on this path, even for aligned neighbours.
    expect(sgtableDmaSegments(table).map(([, l]) => l)).toEqual([PAGE_SIZE, 300, 2 * PAGE_SIZE]);
    expect(sgDmaIsSwiotlb(table)).toBe(true);
    expect([0, 1, 2].map((i) => sgDmaIsBounced(table, i))).toEqual([false, true, false]);
    expect(firstBadSegment(rig, table)).toBe(-1);
    dmaUnmapSgtable(rig.dev, table, DmaDirection.TO_DEVICE);
    expect(rig.kernel.swiotlb?.stats.used).toBe(0);
    expect(rig.dev.domain?.mappedBytes).toBe(0);
  });

  it("what the device writes reaches the CPU's memory on sync for CPU and on unmap", () => {
    const rig = makeRig({ untrusted: true });
    const table = listOf(rig, [{ offset: 8, len: 256 }, { offset: 8, len: 256 }]);
    expect(dmaMapSgtable(rig.dev, table, DmaDirection.FROM_DEVICE)).toBe(0);
    const [[a0], [a1]] = sgtableDmaSegments(table) as [[DmaAddr, number], [DmaAddr, number]];
    rig.ep.dmaWrite(a0, pattern(256, 40));
    // Still in the bounce slot until synced.
    expect(firstDifference(rig.platform.memory.read(physAddr(table.phys[0] ?? 0), 256), pattern(256, 40))).not.toBe(-1);
    dmaSyncSgtableForCpu(rig.dev, table, DmaDirection.FROM_DEVICE);
    expect(firstDifference(rig.platform.memory.read(physAddr(table.phys[0] ?? 0), 256), pattern(256, 40))).toBe(-1);
    dmaSyncSgtableForDevice(rig.dev, table, DmaDirection.FROM_DEVICE);
    rig.ep.dmaWrite(a1, pattern(256, 41));
    dmaUnmapSgtable(rig.dev, table, DmaDirection.FROM_DEVICE);
    expect(firstDifference(rig.platform.memory.read(physAddr(table.phys[1] ?? 0), 256), pattern(256, 41))).toBe(-1);
  });
});

describe("non-coherent devices: CPU cache maintenance per entry", () => {
  for (const impl of ["classic", "two-step"] as const) {
    it(`${impl}: a CPU store reaches the device only after a sync for the device; a device store the CPU only after a sync for the CPU`, () => {
      const rig = makeRig({ device: { coherent: false } });
      const { kernel } = rig;
      const table = listOf(rig, [{ len: PAGE_SIZE }, { len: PAGE_SIZE }]);
      expect(dmaMapSgtable(rig.dev, table, DmaDirection.BIDIRECTIONAL, 0, { impl })).toBe(0);
      const [[addr]] = sgtableDmaSegments(table) as [[DmaAddr, number]];
      kernel.cpuWrite((table.phys[1] ?? 0) as PhysAddr, pattern(64, 9));
      expect(firstDifference(rig.ep.dmaRead(unsafeDmaAddr(addr + PAGE_SIZE), 64), pattern(64, 9))).not.toBe(-1);
      const before = rig.platform.trace.counters.snapshot();
      dmaSyncSgtableForDevice(rig.dev, table, DmaDirection.BIDIRECTIONAL);
      expect(rig.platform.trace.counters.snapshot().diff(before).get(Counter.CacheLinesWrittenBack)).toBeGreaterThan(0);
      expect(firstDifference(rig.ep.dmaRead(unsafeDmaAddr(addr + PAGE_SIZE), 64), pattern(64, 9))).toBe(-1);
      // The CPU has the line cached; the device overwrites memory behind it.
      kernel.cpuRead((table.phys[0] ?? 0) as PhysAddr, 64);
      rig.ep.dmaWrite(unsafeDmaAddr(addr), pattern(64, 11));
      expect(firstDifference(kernel.cpuRead((table.phys[0] ?? 0) as PhysAddr, 64), pattern(64, 11))).not.toBe(-1);
      dmaSyncSgtableForCpu(rig.dev, table, DmaDirection.BIDIRECTIONAL);
      expect(firstDifference(kernel.cpuRead((table.phys[0] ?? 0) as PhysAddr, 64), pattern(64, 11))).toBe(-1);
      dmaUnmapSgtable(rig.dev, table, DmaDirection.BIDIRECTIONAL);
    });
  }
});

describe("dma-direct", () => {
  it("one segment per entry at its physical address; a 32-bit mask bounces what lies above 4 GiB", () => {
    const rig = makeRig({ kernel: { iommuMode: "off" } });
    const table = listOf(rig, [{ len: PAGE_SIZE }, { len: 100, offset: 7 }]);
    expect(dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE)).toBe(0);
    expect(sgtableDmaSegments(table)).toEqual([
      [table.phys[0], PAGE_SIZE],
      [table.phys[1], 100],
    ]);
    expect(sgDmaIsSwiotlb(table)).toBe(false);
    dmaUnmapSgtable(rig.dev, table, DmaDirection.TO_DEVICE);
  });
});
