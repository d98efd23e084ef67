import { MiB, PageFlag, PhysicalMemory, unsafePhysAddr } from "@dmasim/memory";
import { Trace } from "@dmasim/trace";
import { Counter } from "../counters.js";
import { describe, expect, it } from "vitest";
import { IO_TLB_SEGSIZE, IO_TLB_SIZE } from "./constants.js";
import { SwiotlbError } from "./errors.js";
import { SwiotlbPool } from "./pool.js";

function ram(size: number, confidential = false): PhysicalMemory {
  return new PhysicalMemory(new Trace(), { ram: [{ base: 0, size }], confidential });
}

describe("SwiotlbPool construction", () => {
  it("carves the default 64 MiB pool out of RAM in 2 KiB slots", () => {
    const mem = ram(256 * MiB);
    const before = mem.allocator.freeBytes;
    const pool = new SwiotlbPool(mem);
    expect(pool.nslabs).toBe((64 * MiB) / IO_TLB_SIZE);
    expect(pool.end - pool.start).toBe(64 * MiB);
    expect(pool.start % 4096).toBe(0);
    expect(before - mem.allocator.freeBytes).toBe(64 * MiB);
    expect(pool.stats).toEqual({ nslabs: 32768, used: 0, free: 32768, hiwater: 0, mappings: 0 });
    expect(pool.unencrypted).toBe(false);
  });

  it("rounds the size up to whole segments and the area count up to a power of two", () => {
    const pool = new SwiotlbPool(ram(16 * MiB), { size: 300 * 1024, nareas: 3 });
    // 150 slots → 2 segments; 4 areas would leave less than a segment each, so 2.
    expect(pool.nareas).toBe(2);
    expect(pool.nslabs).toBe(2 * IO_TLB_SEGSIZE);
    expect(pool.areaNslabs).toBe(IO_TLB_SEGSIZE);
  });

  it("makes the pool shared memory in a confidential guest and private again on release", () => {
    const mem = ram(16 * MiB, true);
    const pool = new SwiotlbPool(mem, { size: 1 * MiB });
    expect(pool.unencrypted).toBe(true);
    const pfn = pool.start / 4096;
    for (let i = 0; i < 256; i++) expect(mem.pages.flags(pfn + i) & PageFlag.ENCRYPTED).toBe(0);
    expect(mem.pages.flags(pfn + 256) & PageFlag.ENCRYPTED).not.toBe(0);
    pool.release();
    expect(mem.pages.flags(pfn) & PageFlag.ENCRYPTED).not.toBe(0);
  });

  it("rejects bad options with SwiotlbError EINVAL", () => {
    const mem = ram(16 * MiB);
    for (const options of [{ size: 0 }, { size: 1.5 }, { nareas: 0 }, { nareas: 2.5 }, { below: -1 }]) {
      expect(() => new SwiotlbPool(mem, options)).toThrow(SwiotlbError);
    }
    expect(mem.allocator.freeBytes).toBe(16 * MiB);
  });

  it("reports ENOMEM when RAM cannot hold the pool", () => {
    let err: unknown;
    try {
      new SwiotlbPool(ram(8 * MiB));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SwiotlbError);
    expect((err as SwiotlbError).code).toBe("ENOMEM");
  });

  it("returns its memory on release, refuses while mappings are live, and is unusable after", () => {
    const mem = ram(16 * MiB);
    const pool = new SwiotlbPool(mem, { size: 1 * MiB });
    const dev = { name: "d", minAlignMask: 0 };
    const tlb = pool.tblMapSingle(dev, unsafePhysAddr(0x1000), 100, 0, 1, 0, 0);
    expect(() => {
      pool.release();
    }).toThrow(expect.objectContaining({ code: "EBUSY" }) as Error);
    pool.tblUnmapSingle(dev, unsafePhysAddr(tlb), 100, 1, 0);
    pool.release();
    expect(mem.allocator.freeBytes).toBe(16 * MiB);
    expect(() => pool.tblMapSingle(dev, unsafePhysAddr(0x1000), 100, 0, 1, 0, 0)).toThrow(SwiotlbError);
  });

  it("isSwiotlbBuffer covers exactly the pool", () => {
    const pool = new SwiotlbPool(ram(16 * MiB), { size: 1 * MiB });
    expect(pool.isSwiotlbBuffer(pool.start)).toBe(true);
    expect(pool.isSwiotlbBuffer(unsafePhysAddr(pool.end - 1))).toBe(true);
    expect(pool.isSwiotlbBuffer(unsafePhysAddr(pool.end))).toBe(false);
    expect(pool.isSwiotlbBuffer(unsafePhysAddr(pool.start - 1))).toBe(false);
  });

  it("counts nothing until used", () => {
    const mem = ram(16 * MiB);
    new SwiotlbPool(mem, { size: 1 * MiB });
    expect(mem.trace.counters.get(Counter.SwiotlbSlotsAllocated)).toBe(0);
  });
});
