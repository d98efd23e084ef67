import { MiB, PhysicalMemory, unsafePhysAddr } from "@dmasim/memory";
import { Trace } from "@dmasim/trace";
import { bench, describe } from "vitest";
import { DmaDirection } from "../constants.js";
import { SwiotlbPool } from "./pool.js";
import { SlotTable, type SlotRequest } from "./slots.js";
import { TRUSTED_BDF } from "../test-fixtures.js";

const mem = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: 256 * MiB }] });
const pool = new SwiotlbPool(mem); // the default 64 MiB pool
const dev = { name: TRUSTED_BDF, minAlignMask: 0 };
const orig = 128 * MiB;
mem.fill(unsafePhysAddr(orig), 64 * 1024, 0x5a);

describe("swiotlb map + unmap (64 MiB pool, bytes really copied)", () => {
  bench("4 KiB DMA_TO_DEVICE", () => {
    const tlb = pool.tblMapSingle(dev, unsafePhysAddr(orig), 4096, 0, DmaDirection.TO_DEVICE, 0, 0);
    pool.tblUnmapSingle(dev, unsafePhysAddr(tlb), 4096, DmaDirection.TO_DEVICE, 0);
  });
  bench("4 KiB DMA_BIDIRECTIONAL (copies both ways)", () => {
    const tlb = pool.tblMapSingle(dev, unsafePhysAddr(orig), 4096, 0, DmaDirection.BIDIRECTIONAL, 0, 0);
    pool.tblUnmapSingle(dev, unsafePhysAddr(tlb), 4096, DmaDirection.BIDIRECTIONAL, 0);
  });
  bench("64 KiB DMA_TO_DEVICE", () => {
    const tlb = pool.tblMapSingle(dev, unsafePhysAddr(orig), 65536, 0, DmaDirection.TO_DEVICE, 0, 0);
    pool.tblUnmapSingle(dev, unsafePhysAddr(tlb), 65536, DmaDirection.TO_DEVICE, 0);
  });
  bench("64 KiB DMA_BIDIRECTIONAL (copies both ways)", () => {
    const tlb = pool.tblMapSingle(dev, unsafePhysAddr(orig), 65536, 0, DmaDirection.BIDIRECTIONAL, 0, 0);
    pool.tblUnmapSingle(dev, unsafePhysAddr(tlb), 65536, DmaDirection.BIDIRECTIONAL, 0);
  });
});

// The slot search alone in a nearly full 64 MiB pool: every segment but the last is taken and each
// search starts from slot 0, so it must walk past 255 full segments, with and without the segment skip.
function nearlyFull(skip: boolean): SlotTable {
  const t = new SlotTable(32768, 1, skip);
  const whole: SlotRequest = { origAddr: 0, allocSize: 256 * 1024, allocAlignMask: 0, minAlignMask: 0, segBoundaryMask: undefined };
  for (let i = 0; i < 255; i++) t.search(0, whole, 0);
  return t;
}
const req: SlotRequest = { origAddr: 0x1000, allocSize: 4096, allocAlignMask: 0, minAlignMask: 0, segBoundaryMask: undefined };
const skipping = nearlyFull(true);
const walking = nearlyFull(false);

describe("slot search for 4 KiB in a nearly full pool (255 of 256 segments taken)", () => {
  bench("with the segment skip (dmasim)", () => {
    skipping.areaIndex[0] = 0;
    skipping.release(skipping.search(0, req, 0), 2);
  });
  bench("slot-by-stride walk (upstream)", () => {
    walking.areaIndex[0] = 0;
    walking.release(walking.search(0, req, 0), 2);
  });
});
