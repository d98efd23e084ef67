import { MiB, PhysicalMemory, physAddr, unsafePhysAddr } from "@dmasim/memory";
import { Trace } from "@dmasim/trace";
import { describe, expect, it } from "vitest";
import { DmaDirection } from "../constants.js";
import { SwiotlbError } from "./errors.js";
import { swiotlbZeroPadding } from "./padding.js";
import { SwiotlbPool } from "./pool.js";

const { TO_DEVICE, FROM_DEVICE } = DmaDirection;

function setup(): { mem: PhysicalMemory; pool: SwiotlbPool } {
  const mem = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: 16 * MiB }] });
  const pool = new SwiotlbPool(mem, { size: 1 * MiB });
  // Leave old data in the pool, as earlier users of the slots would.
  mem.fill(physAddr(0x100000), 8192, 0xaa);
  const junk = pool.tblMapSingle({ name: "old", minAlignMask: 0 }, unsafePhysAddr(0x100000), 8192, 0, TO_DEVICE, 0, 0);
  pool.tblUnmapSingle({ name: "old", minAlignMask: 0 }, unsafePhysAddr(junk), 8192, TO_DEVICE, 0);
  return { mem, pool };
}

describe("swiotlbZeroPadding (untrusted devices, iommu_dma_map_swiotlb)", () => {
  it("zeroes the granule around the bounced bytes and leaves the bytes themselves", () => {
    const { mem, pool } = setup();
    const dev = { name: "untrusted", minAlignMask: 0xfff };
    mem.fill(physAddr(0x20234), 100, 0x42);
    // The search resumes after the old mapping, so place the new one back at the start by cycling the area.
    const tlb = pool.tblMapSingle(dev, unsafePhysAddr(0x20234), 100, 0xfff, FROM_DEVICE, 0, 0);
    const granule = tlb - 0x234;
    mem.fill(physAddr(granule), 4096, 0xaa); // make sure stale bytes are there whatever slot was picked
    mem.fill(physAddr(tlb), 100, 0x42);
    expect(swiotlbZeroPadding(pool, tlb, 100, 4096)).toEqual({ pre: 0x234, post: 4096 - 0x234 - 100 });
    const page = mem.read(physAddr(granule), 4096);
    expect(page.subarray(0, 0x234).every((b) => b === 0)).toBe(true);
    expect(page.subarray(0x234, 0x234 + 100).every((b) => b === 0x42)).toBe(true);
    expect(page.subarray(0x234 + 100).every((b) => b === 0)).toBe(true);
  });

  it("does nothing when the range fills whole granules", () => {
    const { pool } = setup();
    const dev = { name: "u", minAlignMask: 0 };
    const tlb = pool.tblMapSingle(dev, unsafePhysAddr(0x20000), 4096, 0xfff, TO_DEVICE, 0, 0);
    expect(swiotlbZeroPadding(pool, tlb, 4096, 4096)).toEqual({ pre: 0, post: 0 });
  });

  it("refuses ranges outside a live allocation and bad granules, writing nothing", () => {
    const { mem, pool } = setup();
    const dev = { name: "u", minAlignMask: 0 };
    const tlb = pool.tblMapSingle(dev, unsafePhysAddr(0x20000), 100, 0, TO_DEVICE, 0, 0); // one slot, not a whole granule
    const before = mem.read(pool.start, 16384);
    expect(() => swiotlbZeroPadding(pool, tlb, 100, 4096)).toThrow(SwiotlbError);
    expect(() => swiotlbZeroPadding(pool, tlb, 100, 3000)).toThrow(SwiotlbError);
    expect(() => swiotlbZeroPadding(pool, 0x1000, 100, 4096)).toThrow(SwiotlbError);
    expect(() => swiotlbZeroPadding(pool, tlb, 0, 4096)).toThrow(SwiotlbError);
    expect(mem.read(pool.start, 16384)).toEqual(before);
  });
});
