import { describe, expect, it } from "vitest";
import { DmaDebugError, DmaDirection } from "@dmasim/dma";
import { PAGE_SIZE } from "@dmasim/memory";
import { dmaMapSg, dmaMapSgtable, dmaSyncSgForCpu, dmaSyncSgForDevice, dmaUnmapSg, dmaUnmapSgtable } from "./index.js";
import { listOf, makeRig } from "./test-fixtures.js";

const pages = (n: number) => Array.from({ length: n }, () => ({ len: PAGE_SIZE }));

describe("dma-debug for scatterlists", () => {
  it("tracks one scatter-gather entry per DMA segment, with the nents that were passed", () => {
    const rig = makeRig({ device: { maxSegmentSize: 2 * PAGE_SIZE } });
    const table = listOf(rig, pages(4));
    expect(dmaMapSg(rig.dev, table, 4, DmaDirection.TO_DEVICE)).toBe(2);
    const entries = rig.kernel.debug.entries(rig.dev.bdf);
    expect(entries.map((e) => [e.type, e.size, e.sgCount, e.sgMappedEnts])).toEqual([
      ["scatter-gather", 8192, 4, 2],
      ["scatter-gather", 8192, 4, 2],
    ]);
    dmaUnmapSg(rig.dev, table, 4, DmaDirection.TO_DEVICE);
    expect(rig.kernel.debug.entries(rig.dev.bdf)).toHaveLength(0);
  });

  it("unmap with a different entry count: thrown before anything is unmapped (throw), recorded and undone (collect)", () => {
    const rig = makeRig();
    const table = listOf(rig, pages(3));
    expect(dmaMapSg(rig.dev, table, 3, DmaDirection.TO_DEVICE)).toBe(1);
    let error: unknown;
    try {
      dmaUnmapSg(rig.dev, table, 1, DmaDirection.TO_DEVICE);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(DmaDebugError);
    expect((error as DmaDebugError).report.check).toBe("unmap-sg-count-mismatch");
    expect(rig.dev.domain?.mappedBytes).toBe(3 * PAGE_SIZE);
    expect(table.mapped).toBe(true);
    rig.kernel.debug.mode = "collect";
    dmaUnmapSg(rig.dev, table, 1, DmaDirection.TO_DEVICE);
    expect(rig.kernel.debugReports().map((r) => r.check)).toEqual(["unmap-sg-count-mismatch", "unmap-sg-count-mismatch"]);
    expect(rig.dev.domain?.mappedBytes).toBe(0);
  });

  it("sync with a different entry count, and sync of a list that is not mapped", () => {
    const rig = makeRig({ kernel: { debug: "collect" } });
    const table = listOf(rig, pages(2));
    dmaSyncSgForCpu(rig.dev, table, 2, DmaDirection.TO_DEVICE);
    expect(dmaMapSg(rig.dev, table, 2, DmaDirection.BIDIRECTIONAL)).toBe(1);
    dmaSyncSgForDevice(rig.dev, table, 1, DmaDirection.BIDIRECTIONAL);
    dmaUnmapSgtable(rig.dev, table, DmaDirection.BIDIRECTIONAL);
    expect(rig.kernel.debugReports().map((r) => r.check)).toEqual(["sync-not-mapped", "sync-sg-count-mismatch"]);
  });

  it("an entry longer than max_seg_size is refused before mapping in throw mode", () => {
    const rig = makeRig({ device: { maxSegmentSize: PAGE_SIZE } });
    const table = listOf(rig, [{ len: 2 * PAGE_SIZE }]);
    expect(() => dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE)).toThrow(/longer than device claims to support \[len=8192\] \[max=4096\]/);
    expect(rig.dev.domain?.mappedBytes).toBe(0);
    expect(table.mapped).toBe(false);
  });

  it("a segment across the boundary (dma-direct maps what the list says): undone and thrown, or recorded", () => {
    const rig = makeRig({ kernel: { iommuMode: "off" }, device: { segBoundaryMask: PAGE_SIZE - 1 } });
    const table = listOf(rig, [{ offset: 2048, len: PAGE_SIZE }]);
    expect(() => dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE)).toThrow(/mapping sg segment across boundary/);
    expect(table.mapped).toBe(false);
    expect(rig.kernel.debug.entries(rig.dev.bdf)).toHaveLength(0);
    rig.kernel.debug.mode = "collect";
    expect(dmaMapSgtable(rig.dev, table, DmaDirection.TO_DEVICE)).toBe(0);
    expect(rig.kernel.debugReports().at(-1)?.check).toBe("sg-segment-crosses-boundary");
    dmaUnmapSgtable(rig.dev, table, DmaDirection.TO_DEVICE);
  });

  it("an unmap of a list that was never mapped is reported and does nothing", () => {
    const rig = makeRig({ kernel: { debug: "collect" } });
    const table = listOf(rig, pages(1));
    dmaUnmapSgtable(rig.dev, table, DmaDirection.TO_DEVICE);
    expect(rig.kernel.debugReports().map((r) => r.check)).toEqual(["unmap-not-mapped"]);
  });
});
