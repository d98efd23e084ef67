import { describe, expect, it } from "vitest";
import { DmaDirection, Errno } from "@dmasim/dma";
import { PAGE_SIZE } from "@dmasim/memory";
import { Counter } from "@dmasim/dma";
import { dmaMapSg, dmaMapSgtable, dmaUnmapSgtable, sgDmaIsBusAddress, sgtableDmaSegments } from "./index.js";
import type { SgMapOptions } from "./index.js";
import { FAR, firstBadSegment, listOf, makeRig } from "./test-fixtures.js";
import { iova } from "@dmasim/iommu";

const IMPLS: readonly SgMapOptions[] = [{ impl: "classic" }, { impl: "two-step" }];

describe("P2P entries (pci_p2pdma_state per entry)", () => {
  for (const options of IMPLS) {
    it(`${options.impl}: BUS_ADDR entries carry the bus address, split the segments and stay out of the IOVA`, () => {
      const rig = makeRig();
      const p2p = rig.switchP2p;
      const table = listOf(rig, [{ len: PAGE_SIZE }, { phys: p2p.phys + PAGE_SIZE, len: 2 * PAGE_SIZE }, { len: PAGE_SIZE }]);
      const before = rig.platform.trace.counters.snapshot();
      expect(dmaMapSgtable(rig.dev, table, DmaDirection.BIDIRECTIONAL, 0, options)).toBe(0);
      const segs = sgtableDmaSegments(table);
      expect(segs.map(([, l]) => l)).toEqual([PAGE_SIZE, 2 * PAGE_SIZE, PAGE_SIZE]);
      expect(segs[1]?.[0]).toBe(p2p.phys + PAGE_SIZE + p2p.busOffset);
      expect(sgDmaIsBusAddress(table, 1)).toBe(true);
      expect(sgDmaIsBusAddress(table, 0)).toBe(false);
      // Only the two RAM pages are in the IO page table.
      expect(rig.dev.domain?.mappedBytes).toBe(2 * PAGE_SIZE);
      expect(firstBadSegment(rig, table)).toBe(-1);
      const d = rig.platform.trace.counters.snapshot().diff(before);
      expect(d.get(Counter.BytesPeerViaSwitch)).toBe(2 * PAGE_SIZE);
      dmaUnmapSgtable(rig.dev, table, DmaDirection.BIDIRECTIONAL);
      expect(rig.dev.domain?.mappedBytes).toBe(0);
      expect(sgDmaIsBusAddress(table, 1)).toBe(false);
    });

    it(`${options.impl}: THRU_HOST_BRIDGE entries get IOVAs and reach the peer through the root complex`, () => {
      const rig = makeRig();
      const p2p = rig.bridgeP2p;
      const table = listOf(rig, [{ phys: p2p.phys, len: 2 * PAGE_SIZE }, { len: PAGE_SIZE }]);
      const before = rig.platform.trace.counters.snapshot();
      expect(dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE, 0, options)).toBe(0);
      const segs = sgtableDmaSegments(table);
      expect(segs.map(([, l]) => l)).toEqual([3 * PAGE_SIZE]);
      expect(rig.dev.domain?.iovaToPhys(iova(segs[0]?.[0] ?? 0))).toBe(p2p.phys);
      expect(firstBadSegment(rig, table)).toBe(-1);
      const d = rig.platform.trace.counters.snapshot().diff(before);
      expect(d.get(Counter.BytesPeerViaHostBridge)).toBe(2 * PAGE_SIZE);
      dmaUnmapSgtable(rig.dev, table, DmaDirection.TO_DEVICE);
      expect(rig.dev.domain?.mappedBytes).toBe(0);
    });

    it(`${options.impl}: NOT_SUPPORTED fails with -EREMOTEIO before anything is mapped`, () => {
      const rig = makeRig({ hostBridgeP2p: "none" });
      const ranges = rig.dev.cookie?.iovad.liveRanges;
      const table = listOf(rig, [{ len: PAGE_SIZE }, { phys: rig.bridgeP2p.phys, len: PAGE_SIZE }]);
      expect(dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE, 0, options)).toBe(-Errno.EREMOTEIO);
      expect(dmaMapSg(rig.dev, table, 2, DmaDirection.TO_DEVICE, 0, options)).toBe(0);
      expect(rig.dev.domain?.mappedBytes).toBe(0);
      expect(rig.dev.cookie?.iovad.liveRanges).toBe(ranges);
      expect(table.mapped).toBe(false);
    });
  }

  it("dma-direct: bus addresses for BUS_ADDR, physical addresses for THRU_HOST_BRIDGE, one segment per entry", () => {
    const rig = makeRig({ kernel: { iommuMode: "off" }, device: { dmaMaskBits: 64 } });
    const table = listOf(rig, [{ phys: rig.switchP2p.phys, len: PAGE_SIZE }, { phys: rig.bridgeP2p.phys + 64, len: 100 }, { len: PAGE_SIZE }]);
    expect(dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE)).toBe(0);
    const segs = sgtableDmaSegments(table);
    expect(segs).toEqual([
      [rig.switchP2p.phys + rig.switchP2p.busOffset, PAGE_SIZE],
      [rig.bridgeP2p.phys + 64, 100],
      [table.phys[2], PAGE_SIZE],
    ]);
    expect(firstBadSegment(rig, table)).toBe(-1);
    dmaUnmapSgtable(rig.dev, table, DmaDirection.TO_DEVICE);
  });

  it("dma-direct: NOT_SUPPORTED anywhere in the list fails with -EREMOTEIO and holds no bounce slot", () => {
    const rig = makeRig({ kernel: { iommuMode: "off", swiotlb: { bytes: 1 << 20, force: true } }, hostBridgeP2p: "none" });
    const table = listOf(rig, [{ len: 100 }, { len: 200 }, { phys: rig.bridgeP2p.phys, len: PAGE_SIZE }]);
    expect(rig.platform.endpoint(FAR).bdf).toBe(FAR);
    expect(dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE)).toBe(-Errno.EREMOTEIO);
    expect(rig.kernel.swiotlb?.stats.used).toBe(0);
  });
});
