import { MiB, PhysicalMemory, patternBytes, physAddr, unsafePhysAddr } from "@dmasim/memory";
import { Trace } from "@dmasim/trace";
import { Counter } from "../counters.js";
import { beforeEach, describe, expect, it } from "vitest";
import { DMA_ATTR_SKIP_CPU_SYNC, DMA_MAPPING_ERROR, DmaDirection } from "../constants.js";
import { swiotlbMaxMappingSize, swiotlbPoolMapSingle, swiotlbPoolUnmapSingle, isSwiotlbBuffer } from "./api.js";
import { IO_TLB_SEGSIZE, IO_TLB_SIZE } from "./constants.js";
import { SwiotlbError } from "./errors.js";
import { SwiotlbPool, type SwiotlbDevice } from "./pool.js";
import { TRUSTED_BDF } from "../test-fixtures.js";

const { TO_DEVICE, FROM_DEVICE, BIDIRECTIONAL } = DmaDirection;
const plain: SwiotlbDevice = { name: TRUSTED_BDF, minAlignMask: 0 };
const nvme: SwiotlbDevice = { name: "0000:02:00.0", minAlignMask: 0xfff };

let mem: PhysicalMemory;
let pool: SwiotlbPool;

const pattern = patternBytes;

function slotOf(tlb: number): number {
  return Math.floor((tlb - pool.start) / IO_TLB_SIZE);
}

beforeEach(() => {
  mem = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: 16 * MiB }] });
  pool = new SwiotlbPool(mem, { size: 1 * MiB });
});

describe("swiotlbPoolMapSingle copies", () => {
  it("copies the original into the bounce buffer on map, whatever the direction", () => {
    for (const dir of [TO_DEVICE, FROM_DEVICE, BIDIRECTIONAL]) {
      const orig = 0x10000 + dir * 0x1000;
      mem.write(physAddr(orig), pattern(300, dir));
      const tlb = pool.tblMapSingle(plain, unsafePhysAddr(orig), 300, 0, dir, 0, 0);
      expect(mem.read(physAddr(tlb), 300)).toEqual(pattern(300, dir));
    }
  });

  it("keeps unwritten bytes on a partial device write (why map bounces for DMA_FROM_DEVICE too)", () => {
    const orig = 0x20000;
    mem.write(physAddr(orig), pattern(1000, 7));
    const tlb = pool.tblMapSingle(plain, unsafePhysAddr(orig), 1000, 0, FROM_DEVICE, 0, 0);
    mem.write(physAddr(tlb), new Uint8Array(100).fill(0xee)); // the device writes only the first 100 bytes
    pool.tblUnmapSingle(plain, unsafePhysAddr(tlb), 1000, FROM_DEVICE, 0);
    const expected = pattern(1000, 7);
    expected.fill(0xee, 0, 100);
    expect(mem.read(physAddr(orig), 1000)).toEqual(expected);
  });

  it("copies back on unmap for FROM_DEVICE and BIDIRECTIONAL, not for TO_DEVICE or with SKIP_CPU_SYNC", () => {
    const cases: [DmaDirection, number, boolean][] = [
      [FROM_DEVICE, 0, true],
      [BIDIRECTIONAL, 0, true],
      [TO_DEVICE, 0, false],
      [FROM_DEVICE, DMA_ATTR_SKIP_CPU_SYNC, false],
    ];
    for (const [dir, attrs, copies] of cases) {
      const orig = 0x30000;
      mem.fill(physAddr(orig), 64, 0x11);
      const tlb = pool.tblMapSingle(plain, unsafePhysAddr(orig), 64, 0, dir, 0, 0);
      mem.fill(physAddr(tlb), 64, 0x99);
      pool.tblUnmapSingle(plain, unsafePhysAddr(tlb), 64, dir, attrs);
      expect(mem.read(physAddr(orig), 64)).toEqual(new Uint8Array(64).fill(copies ? 0x99 : 0x11));
    }
  });

  it("syncs for the CPU and for the device in the right direction only", () => {
    const orig = 0x40000;
    mem.fill(physAddr(orig), 256, 1);
    const tlb = pool.tblMapSingle(plain, unsafePhysAddr(orig), 256, 0, BIDIRECTIONAL, 0, 0);
    mem.fill(physAddr(tlb), 256, 2);
    pool.syncSingleForCpu(plain, unsafePhysAddr(tlb), 256, TO_DEVICE);
    expect(mem.read(physAddr(orig), 1)[0]).toBe(1);
    pool.syncSingleForCpu(plain, unsafePhysAddr(tlb), 256, FROM_DEVICE);
    expect(mem.read(physAddr(orig), 1)[0]).toBe(2);
    mem.fill(physAddr(orig), 256, 3);
    pool.syncSingleForDevice(plain, unsafePhysAddr(tlb), 256, FROM_DEVICE);
    expect(mem.read(physAddr(tlb), 1)[0]).toBe(2);
    pool.syncSingleForDevice(plain, unsafePhysAddr(tlb), 256, BIDIRECTIONAL);
    expect(mem.read(physAddr(tlb), 1)[0]).toBe(3);
  });

  it("syncs a sub-range of a multi-slot mapping at the right original offset", () => {
    const orig = 0x50000 + 0x10;
    mem.write(physAddr(orig), pattern(10000, 3));
    const tlb = pool.tblMapSingle(nvme, unsafePhysAddr(orig), 10000, 0, FROM_DEVICE, 0, 0);
    mem.fill(physAddr(tlb + 5000), 100, 0x5a);
    pool.syncSingleForCpu(nvme, unsafePhysAddr(tlb + 5000), 100, FROM_DEVICE);
    const got = mem.read(physAddr(orig), 10000);
    expect(got.subarray(5000, 5100)).toEqual(new Uint8Array(100).fill(0x5a));
    expect(got.subarray(0, 5000)).toEqual(pattern(10000, 3).subarray(0, 5000));
    expect(got.subarray(5100)).toEqual(pattern(10000, 3).subarray(5100));
  });

  it("syncs a range that starts in the first min_align bytes of a later slot (negative tlb_offset)", () => {
    // orig keeps 0x30 under the device's min_align_mask, so every data slot starts 0x30 bytes into the
    // original's stretch: the first 0x30 bytes of slot 1 hold original bytes 2048 - 0x30 .. 2047.
    const orig = 0x50000 + 0x30;
    mem.write(physAddr(orig), pattern(6000, 4));
    const tlb = pool.tblMapSingle(nvme, unsafePhysAddr(orig), 6000, 0, BIDIRECTIONAL, 0, 0);
    const slot1 = tlb - 0x30 + IO_TLB_SIZE;
    const at = slot1 - tlb; // 2000: inside the mapping, before the in-slot offset of slot 1
    mem.fill(physAddr(tlb + at), 100, 0x6b);
    pool.syncSingleForCpu(nvme, unsafePhysAddr(tlb + at + 8), 60, FROM_DEVICE);
    const expected = pattern(6000, 4);
    expected.fill(0x6b, at + 8, at + 68);
    expect(mem.read(physAddr(orig), 6000)).toEqual(expected);
    expect(pool.origAddrOf(nvme, unsafePhysAddr(slot1 + 8))).toBe(orig + at + 8);
    // The CPU's side goes the other way through the same arithmetic.
    mem.fill(physAddr(orig + at), 16, 0x2c);
    pool.syncSingleForDevice(nvme, unsafePhysAddr(slot1), 16, TO_DEVICE);
    expect(mem.read(physAddr(slot1), 16)).toEqual(new Uint8Array(16).fill(0x2c));
    // Before the first slot's offset there is still nothing of the mapping.
    expect(() => {
      pool.syncSingleForCpu(nvme, unsafePhysAddr(tlb - 8), 8, FROM_DEVICE);
    }).toThrow(SwiotlbError);
    pool.tblUnmapSingle(nvme, unsafePhysAddr(tlb), 6000, BIDIRECTIONAL, 0);
  });

  it("counts slots and bounced bytes, and emits swiotlb.bounce events only when someone listens", () => {
    const c = mem.trace.counters;
    const tlb = pool.tblMapSingle(plain, unsafePhysAddr(0x1000), 5000, 0, BIDIRECTIONAL, 0, 0);
    expect(c.get(Counter.SwiotlbSlotsAllocated)).toBe(3);
    pool.tblUnmapSingle(plain, unsafePhysAddr(tlb), 5000, BIDIRECTIONAL, 0);
    expect(c.get(Counter.SwiotlbSlotsFreed)).toBe(c.get(Counter.SwiotlbSlotsAllocated));
    expect(c.get(Counter.SwiotlbBounceBytes)).toBe(10000);
    expect(mem.trace.events.events()).toHaveLength(0);
    mem.trace.events.setRecording(true);
    const t2 = pool.tblMapSingle(plain, unsafePhysAddr(0x1000), 10, 0, TO_DEVICE, 0, 0);
    expect(mem.trace.events.events("swiotlb.bounce")).toEqual([
      { type: "swiotlb.bounce", t: 0, device: plain.name, orig: 0x1000, slot: t2, len: 10, toDevice: true },
    ]);
  });
});

describe("introspection", () => {
  it("origAddrOf maps any byte of a live bounce buffer back to its original, and nothing else", () => {
    const tlb = pool.tblMapSingle(nvme, unsafePhysAddr(0x50123), 5000, 0, BIDIRECTIONAL, 0, 0);
    expect(pool.origAddrOf(nvme, unsafePhysAddr(tlb))).toBe(0x50123);
    expect(pool.origAddrOf(nvme, unsafePhysAddr(tlb + 4321))).toBe(0x50123 + 4321);
    expect(pool.origAddrOf(nvme, unsafePhysAddr(pool.start + 200 * IO_TLB_SIZE))).toBeUndefined();
    expect(pool.origAddrOf(nvme, unsafePhysAddr(0x10))).toBeUndefined();
    expect(pool.origAddrOf(nvme, unsafePhysAddr(tlb - 1))).toBeUndefined(); // before the mapping, inside its first slot
    mem.trace.events.setRecording(true);
    pool.tblUnmapSingle(nvme, unsafePhysAddr(tlb), 5000, BIDIRECTIONAL, 0);
    expect(mem.trace.events.events("swiotlb.bounce")).toMatchObject([{ orig: 0x50123, slot: tlb, len: 5000, toDevice: false }]);
    expect(pool.origAddrOf(nvme, unsafePhysAddr(tlb))).toBeUndefined();
  });
});

describe("slot placement", () => {
  it("starts a plain mapping on a slot boundary", () => {
    const tlb = pool.tblMapSingle(plain, unsafePhysAddr(0x1234), 100, 0, TO_DEVICE, 0, 0);
    expect((tlb - pool.start) % IO_TLB_SIZE).toBe(0);
  });

  it("keeps the address bits under the device's min_align_mask", () => {
    const a = pool.tblMapSingle(nvme, unsafePhysAddr(0x10234), 100, 0, TO_DEVICE, 0, 0);
    expect(a & 0xfff).toBe(0x234);
    const b = pool.tblMapSingle(nvme, unsafePhysAddr(0x10a34), 100, 0, TO_DEVICE, 0, 0);
    expect(b & 0xfff).toBe(0xa34);
    expect(pool.stats.used).toBe(2);
  });

  it("page-aligns mappings of a page or more when nothing else asks for alignment", () => {
    const small = pool.tblMapSingle(plain, unsafePhysAddr(0x1000), 100, 0, TO_DEVICE, 0, 0);
    expect(slotOf(small)).toBe(0);
    const big = pool.tblMapSingle(plain, unsafePhysAddr(0x2000), 4096, 0, TO_DEVICE, 0, 0);
    expect(slotOf(big)).toBe(2); // slot 1 is free but not page aligned
    const odd = pool.tblMapSingle(plain, unsafePhysAddr(0x4000), 2000, 0, TO_DEVICE, 0, 0);
    expect(slotOf(odd)).toBe(4); // below a page: the next slot will do (the search resumes after the last hit)
  });

  it("honours allocAlignMask (an IOVA granule) and keeps the in-granule offset", () => {
    pool.tblMapSingle(plain, unsafePhysAddr(0x1000), 100, 0, TO_DEVICE, 0, 0);
    const tlb = pool.tblMapSingle(nvme, unsafePhysAddr(0x7234), 100, 0xfff, TO_DEVICE, 0, 0);
    expect(tlb & 0xfff).toBe(0x234);
    // The allocation covers the whole granule: ALIGN(100 + 0x234, 4096) = 2 slots.
    expect(pool.stats.used).toBe(1 + 2);
  });

  it("puts whole slots of alignment offset in pad slots and frees them with the mapping", () => {
    const dev = { name: "d", minAlignMask: 0xffff };
    const tlb = pool.tblMapSingle(dev, unsafePhysAddr(0x95234), 100, 0xffff, TO_DEVICE, 0, 0);
    expect(tlb & 0xffff).toBe(0x5234);
    expect((tlb - 0x5234 - pool.start) % 0x10000).toBe(0);
    expect(pool.stats.used).toBe(32); // one 64 KiB granule
    expect(mem.read(physAddr(tlb), 1)[0]).toBe(0);
    pool.tblUnmapSingle(dev, unsafePhysAddr(tlb), 100, TO_DEVICE, 0);
    expect(pool.stats.used).toBe(0);
    // The pad slots are free again: the 1 MiB pool holds sixteen whole 64 KiB granules once more.
    for (let i = 0; i < 16; i++) expect(pool.tblMapSingle(dev, unsafePhysAddr(0x90000), 0x10000, 0xffff, TO_DEVICE, 0, 0)).not.toBe(DMA_MAPPING_ERROR);
    expect(pool.stats.free).toBe(0);
  });

  it("never lets a mapping cross a 128-slot segment", () => {
    const first = pool.tblMapSingle(plain, unsafePhysAddr(0x1000), 100 * IO_TLB_SIZE, 0, TO_DEVICE, 0, 0);
    expect(slotOf(first)).toBe(0);
    const second = pool.tblMapSingle(plain, unsafePhysAddr(0x1000), 32 * IO_TLB_SIZE, 0, TO_DEVICE, 0, 0);
    expect(slotOf(second)).toBe(IO_TLB_SEGSIZE);
    const filler = pool.tblMapSingle(plain, unsafePhysAddr(0x1000), 28 * IO_TLB_SIZE, 0, TO_DEVICE, 0, 0);
    expect(slotOf(filler)).toBe(IO_TLB_SEGSIZE + 32); // resumes after `second` (area->index)
  });

  it("honours the device's segment boundary", () => {
    const dev = { name: "d", minAlignMask: 0, segBoundaryMask: 0xffff }; // 32-slot windows
    pool.tblMapSingle(dev, unsafePhysAddr(0x1000), 30 * IO_TLB_SIZE, 0, TO_DEVICE, 0, 0);
    const tlb = pool.tblMapSingle(dev, unsafePhysAddr(0x1000), 4 * IO_TLB_SIZE, 0, TO_DEVICE, 0, 0);
    expect(slotOf(tlb)).toBe(32);
  });

  it("maps at most 128 slots (256 KiB), failing beyond with DMA_MAPPING_ERROR", () => {
    const tlb = pool.tblMapSingle(plain, unsafePhysAddr(0), 256 * 1024, 0, TO_DEVICE, 0, 0);
    expect(tlb).not.toBe(DMA_MAPPING_ERROR);
    expect(pool.tblMapSingle(plain, unsafePhysAddr(0), 256 * 1024 + 1, 0, TO_DEVICE, 0, 0)).toBe(DMA_MAPPING_ERROR);
    expect(mem.trace.counters.get(Counter.SwiotlbAllocFail)).toBe(1);
    expect(pool.maxMappingSize(plain)).toBe(256 * 1024);
    expect(pool.maxMappingSize(nvme)).toBe(252 * 1024);
  });

  it("starts in the calling CPU's area and wraps to the next when it is full", () => {
    const p = new SwiotlbPool(mem, { size: 1 * MiB, nareas: 4 });
    expect(p.areaNslabs).toBe(128);
    const a = p.tblMapSingle(plain, unsafePhysAddr(0x1000), 100, 0, TO_DEVICE, 0, 2);
    expect(Math.floor((a - p.start) / IO_TLB_SIZE / 128)).toBe(2);
    const b = p.tblMapSingle(plain, unsafePhysAddr(0x1000), 100, 0, TO_DEVICE, 0, 5); // 5 & 3 = area 1
    expect(Math.floor((b - p.start) / IO_TLB_SIZE / 128)).toBe(1);
    const full = p.tblMapSingle(plain, unsafePhysAddr(0x1000), 256 * 1024, 0, TO_DEVICE, 0, 3);
    expect(p.areaUsed(3)).toBe(128);
    const c = p.tblMapSingle(plain, unsafePhysAddr(0x1000), 100, 0, TO_DEVICE, 0, 3); // area 3 is full → area 0
    expect(Math.floor((c - p.start) / IO_TLB_SIZE / 128)).toBe(0);
    expect(full).not.toBe(DMA_MAPPING_ERROR);
  });

  it("returns DMA_MAPPING_ERROR when the pool is exhausted, and recovers after an unmap", () => {
    const p = new SwiotlbPool(mem, { size: 256 * 1024 });
    const addrs: number[] = [];
    for (let i = 0; i < 128; i++) addrs.push(p.tblMapSingle(plain, unsafePhysAddr(0x1000), 2048, 0, TO_DEVICE, 0, 0));
    expect(addrs).not.toContain(DMA_MAPPING_ERROR);
    expect(p.tblMapSingle(plain, unsafePhysAddr(0x1000), 1, 0, TO_DEVICE, 0, 0)).toBe(DMA_MAPPING_ERROR);
    expect(mem.trace.counters.get(Counter.SwiotlbAllocFail)).toBe(1);
    expect(p.stats).toMatchObject({ used: 128, free: 0, hiwater: 128, mappings: 128 });
    p.tblUnmapSingle(plain, unsafePhysAddr(addrs[77]!), 2048, TO_DEVICE, 0);
    expect(p.tblMapSingle(plain, unsafePhysAddr(0x1000), 1, 0, TO_DEVICE, 0, 0)).toBe(addrs[77]);
    expect(p.tblMapSingle(plain, unsafePhysAddr(0x1000), 2049, 0, TO_DEVICE, 0, 0)).toBe(DMA_MAPPING_ERROR);
  });

  it("tracks the high-water mark and resets it to the current use", () => {
    const a = pool.tblMapSingle(plain, unsafePhysAddr(0x1000), 8192, 0, TO_DEVICE, 0, 0);
    pool.tblUnmapSingle(plain, unsafePhysAddr(a), 8192, TO_DEVICE, 0);
    expect(pool.stats.hiwater).toBe(4);
    pool.resetHiwater();
    expect(pool.stats.hiwater).toBe(0);
  });
});

describe("misuse is refused and changes nothing", () => {
  function snapshot(): unknown {
    const { MemReadBytes: _reads, ...counters } = mem.trace.counters.snapshot().nonZero();
    return { stats: pool.stats, orig: mem.read(physAddr(0x60000), 4096), counters };
  }

  it("rejects unmapping an address that is not a live bounce buffer (ENOENT) or a wrong size (EINVAL)", () => {
    mem.write(physAddr(0x60000), pattern(4096, 9));
    const tlb = pool.tblMapSingle(plain, unsafePhysAddr(0x60000), 3000, 0, BIDIRECTIONAL, 0, 0);
    mem.fill(physAddr(tlb), 3000, 0x77);
    const before = snapshot();
    const bad: [number, number, string][] = [
      [0x123, 3000, "ENOENT"], // not in the pool
      [tlb + 8, 3000, "ENOENT"], // inside, not the start
      [tlb + 2048, 3000, "ENOENT"], // a later slot of the same mapping
      [pool.start + 64 * 2048, 3000, "ENOENT"], // a free slot
      [tlb, 2999, "EINVAL"], // wrong size
    ];
    for (const [addr, size, code] of bad) {
      expect(() => {
        pool.tblUnmapSingle(plain, unsafePhysAddr(addr), size, BIDIRECTIONAL, 0);
      }).toThrow(expect.objectContaining({ code }) as Error);
      expect(snapshot()).toEqual(before);
    }
    pool.tblUnmapSingle(plain, unsafePhysAddr(tlb), 3000, BIDIRECTIONAL, 0);
    expect(() => {
      pool.tblUnmapSingle(plain, unsafePhysAddr(tlb), 3000, BIDIRECTIONAL, 0);
    }).toThrow(SwiotlbError);
  });

  it("rejects syncs outside the mapping without copying", () => {
    const tlb = pool.tblMapSingle(plain, unsafePhysAddr(0x60000), 3000, 0, BIDIRECTIONAL, 0, 0);
    mem.fill(physAddr(tlb), 3000, 0x77);
    const before = snapshot();
    expect(() => {
      pool.syncSingleForCpu(plain, unsafePhysAddr(tlb + 1000), 2001, FROM_DEVICE);
    }).toThrow(SwiotlbError);
    expect(() => {
      pool.syncSingleForCpu(plain, unsafePhysAddr(pool.start + 100 * 2048), 10, FROM_DEVICE);
    }).toThrow(SwiotlbError);
    expect(() => {
      pool.syncSingleForDevice(plain, unsafePhysAddr(tlb), 0, TO_DEVICE);
    }).toThrow(SwiotlbError);
    expect(() => {
      pool.syncSingleForDevice(plain, unsafePhysAddr(tlb), 10, DmaDirection.NONE);
    }).toThrow(SwiotlbError);
    expect(snapshot()).toEqual(before);
  });

  it("rejects bad map arguments", () => {
    const before = snapshot();
    const calls: (() => number)[] = [
      () => pool.tblMapSingle(plain, unsafePhysAddr(-1), 10, 0, TO_DEVICE, 0, 0),
      () => pool.tblMapSingle(plain, unsafePhysAddr(0x1000), 0, 0, TO_DEVICE, 0, 0),
      () => pool.tblMapSingle(plain, unsafePhysAddr(0x1000), 1.5, 0, TO_DEVICE, 0, 0),
      () => pool.tblMapSingle(plain, unsafePhysAddr(32 * MiB), 10, 0, TO_DEVICE, 0, 0), // not RAM
      () => pool.tblMapSingle(plain, unsafePhysAddr(0x1000), 10, -1, TO_DEVICE, 0, 0),
      () => pool.tblMapSingle(plain, unsafePhysAddr(0x1000), 10, 0, 7 as DmaDirection, 0, 0),
      () => pool.tblMapSingle(plain, unsafePhysAddr(0x1000), 10, 0, TO_DEVICE, 1 << 20, 0),
      () => pool.tblMapSingle(plain, unsafePhysAddr(0x1000), 10, 0, TO_DEVICE, 0, -1),
      () => pool.tblMapSingle({ name: "x", minAlignMask: 0, segBoundaryMask: 1000 }, unsafePhysAddr(0x1000), 10, 0, TO_DEVICE, 0, 0),
    ];
    for (const call of calls) expect(call).toThrow(Error);
    expect(snapshot()).toEqual(before);
  });
});

describe("device-facing entry points", () => {
  it("go through dev.dmaIoTlbMem and fail soft without a pool", () => {
    const withPool = { ...plain, dmaIoTlbMem: pool };
    const none = { ...plain, dmaIoTlbMem: undefined };
    const tlb = swiotlbPoolMapSingle(withPool, 0x1000, 10, 0, TO_DEVICE, 0);
    expect(isSwiotlbBuffer(withPool, tlb)).toBe(true);
    swiotlbPoolUnmapSingle(withPool, tlb, 10, TO_DEVICE, 0);
    expect(swiotlbPoolMapSingle(none, 0x1000, 10, 0, TO_DEVICE, 0)).toBe(DMA_MAPPING_ERROR);
    expect(isSwiotlbBuffer(none, tlb)).toBe(false);
    expect(swiotlbMaxMappingSize(none)).toBe(Infinity);
    expect(swiotlbMaxMappingSize(withPool)).toBe(256 * 1024);
    expect(() => {
      swiotlbPoolUnmapSingle(none, tlb, 10, TO_DEVICE, 0);
    }).toThrow(SwiotlbError);
  });
});
