import { describe, expect, it } from "vitest";
import { MiB } from "@dmasim/memory";
import { dmaBufMappingComparison } from "./compare.js";

describe("sg_table against the physical-range list", () => {
  it("the list takes one IOVA and one sync where upstream's exporters take one per VRAM range, and fewer bytes than their tables", () => {
    const [upstream, oneIova, list] = dmaBufMappingComparison(16 * MiB);
    if (upstream === undefined || oneIova === undefined || list === undefined) throw new Error("rows missing");
    // 8 blocks, every other one in RAM: 4 VRAM ranges, 4 RAM ranges.
    expect(upstream.iovaAllocations).toBe(5);
    expect(upstream.iotlbSyncs).toBe(5);
    expect(list.iovaAllocations).toBe(1);
    expect(list.iotlbSyncs).toBe(1);
    expect(oneIova.iovaAllocations).toBe(1);
    // An sg_table in one IOVA collapses to one segment: 32 bytes, plus the exporter's mapping state.
    expect(oneIova.metadataBytes).toBeLessThan(list.metadataBytes);
    expect(list.metadataBytes).toBeLessThan(upstream.metadataBytes);
    expect(list.pteWrites).toBe(oneIova.pteWrites);
    // The importer keeps its IOVA across the move and relinks into it.
    expect(list.remapIovaAllocations).toBe(0);
    expect(oneIova.remapIovaAllocations).toBe(1);
    expect(upstream.remapIovaAllocations).toBeGreaterThan(1);
  });
});
