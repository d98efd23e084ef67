import { MiB, PhysicalMemory, physAddr, unsafePhysAddr } from "@dmasim/memory";
import { Trace } from "@dmasim/trace";
import { Counter } from "../counters.js";
import { beforeEach, describe, expect, it } from "vitest";
import { DmaDirection } from "../constants.js";
import { CpuCache } from "./cpu-cache.js";
import { CpuCacheError } from "./errors.js";

const { TO_DEVICE, FROM_DEVICE, BIDIRECTIONAL } = DmaDirection;
const BUF = 0x10000;

let mem: PhysicalMemory;
let cache: CpuCache;

function bytes(len: number, value: number): Uint8Array {
  return new Uint8Array(len).fill(value);
}

/** What a non-coherent device sees: memory, never the CPU cache. */
function deviceRead(phys: number, len: number): Uint8Array {
  return mem.read(physAddr(phys), len);
}

beforeEach(() => {
  mem = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: 4 * MiB }] });
  cache = new CpuCache(mem);
});

describe("CPU accesses", () => {
  it("keeps CPU writes in dirty lines, not in memory", () => {
    cache.cpuWrite(unsafePhysAddr(BUF + 10), bytes(100, 7));
    expect(cache.cpuRead(unsafePhysAddr(BUF + 10), 100)).toEqual(bytes(100, 7));
    expect(mem.read(physAddr(BUF + 10), 100)).toEqual(bytes(100, 0));
    expect(cache.lines).toBe(2); // bytes 10..109 touch lines 0 and 1 of the buffer
    expect(cache.dirtyLines).toBe(2);
  });

  it("fills clean lines on a read miss, merging partial writes with memory", () => {
    mem.write(physAddr(BUF), bytes(64, 3));
    cache.cpuWrite(unsafePhysAddr(BUF + 8), bytes(8, 9));
    const line = cache.cpuRead(unsafePhysAddr(BUF), 64);
    expect(Array.from(line.subarray(0, 10))).toEqual([3, 3, 3, 3, 3, 3, 3, 3, 9, 9]);
    expect(cache.cpuRead(unsafePhysAddr(BUF + 64), 4)).toEqual(bytes(4, 0));
    expect(cache.lines).toBe(2);
    expect(cache.dirtyLines).toBe(1);
  });
});

describe("non-coherent DMA to the device", () => {
  it("without a sync the device reads stale memory", () => {
    cache.cpuWrite(unsafePhysAddr(BUF), bytes(4096, 0xab));
    expect(deviceRead(BUF, 4096)).toEqual(bytes(4096, 0));
  });

  it("archSyncDmaForDevice writes the dirty lines back and keeps them cached, clean", () => {
    cache.cpuWrite(unsafePhysAddr(BUF), bytes(4096, 0xab));
    cache.archSyncDmaForDevice(unsafePhysAddr(BUF), 4096, TO_DEVICE);
    expect(deviceRead(BUF, 4096)).toEqual(bytes(4096, 0xab));
    expect(mem.trace.counters.get(Counter.CacheLinesWrittenBack)).toBe(64);
    expect(cache.dirtyLines).toBe(0);
    expect(cache.lines).toBe(64);
    cache.archSyncDmaForDevice(unsafePhysAddr(BUF), 4096, TO_DEVICE); // nothing dirty: nothing written
    expect(mem.trace.counters.get(Counter.CacheLinesWrittenBack)).toBe(64);
  });

  it("cleans rather than invalidates for DMA_FROM_DEVICE, as arm64 does", () => {
    cache.cpuWrite(unsafePhysAddr(BUF), bytes(128, 1));
    cache.archSyncDmaForDevice(unsafePhysAddr(BUF), 128, FROM_DEVICE);
    expect(mem.read(physAddr(BUF), 128)).toEqual(bytes(128, 1));
    expect(cache.lines).toBe(2);
    expect(mem.trace.counters.get(Counter.CacheLinesInvalidated)).toBe(0);
  });
});

describe("non-coherent DMA from the device", () => {
  it("without a sync the CPU reads its stale clean lines", () => {
    expect(cache.cpuRead(unsafePhysAddr(BUF), 256)).toEqual(bytes(256, 0)); // the driver peeked at the buffer
    mem.write(physAddr(BUF), bytes(256, 0xcd)); // the device writes memory
    expect(cache.cpuRead(unsafePhysAddr(BUF), 256)).toEqual(bytes(256, 0));
  });

  it("archSyncDmaForCpu invalidates for FROM_DEVICE and BIDIRECTIONAL, so the CPU sees the device's data", () => {
    for (const dir of [FROM_DEVICE, BIDIRECTIONAL]) {
      cache.cpuRead(unsafePhysAddr(BUF), 256);
      mem.write(physAddr(BUF), bytes(256, 0xc0 + dir));
      cache.archSyncDmaForCpu(unsafePhysAddr(BUF), 256, dir);
      expect(cache.lines).toBe(0);
      expect(cache.cpuRead(unsafePhysAddr(BUF), 256)).toEqual(bytes(256, 0xc0 + dir));
      cache.archSyncDmaForCpu(unsafePhysAddr(BUF), 256, dir);
    }
    expect(mem.trace.counters.get(Counter.CacheLinesInvalidated)).toBe(16);
  });

  it("does nothing for DMA_TO_DEVICE", () => {
    cache.cpuRead(unsafePhysAddr(BUF), 256);
    mem.write(physAddr(BUF), bytes(256, 5));
    cache.archSyncDmaForCpu(unsafePhysAddr(BUF), 256, TO_DEVICE);
    expect(cache.cpuRead(unsafePhysAddr(BUF), 256)).toEqual(bytes(256, 0));
  });

  it("loses dirty CPU data in lines wholly inside the range (the CPU wrote a buffer the device owned)", () => {
    cache.cpuWrite(unsafePhysAddr(BUF), bytes(64, 0x11));
    mem.write(physAddr(BUF), bytes(64, 0x22));
    cache.archSyncDmaForCpu(unsafePhysAddr(BUF), 64, FROM_DEVICE);
    expect(cache.cpuRead(unsafePhysAddr(BUF), 64)).toEqual(bytes(64, 0x22));
    expect(mem.trace.counters.get(Counter.CacheLinesWrittenBack)).toBe(0);
  });

  it("cleans and invalidates whole lines that stick out of the range: a shared line corrupts the buffer", () => {
    // A 32-byte DMA buffer shares its line with a CPU variable in the first 32 bytes.
    const buf = BUF + 32;
    cache.cpuRead(unsafePhysAddr(buf), 32); // the line is cached (clean copy of the buffer)
    cache.cpuWrite(unsafePhysAddr(BUF), bytes(4, 0x99)); // the CPU updates its neighbour variable during the DMA: line dirty
    mem.write(physAddr(buf), bytes(32, 0xdd)); // the device writes the buffer
    cache.archSyncDmaForCpu(unsafePhysAddr(buf), 32, FROM_DEVICE);
    expect(cache.isCached(unsafePhysAddr(BUF))).toBe(false); // the whole line went, not half of it
    expect(mem.read(physAddr(BUF), 4)).toEqual(bytes(4, 0x99)); // the neighbour survived (written back first)...
    expect(cache.cpuRead(unsafePhysAddr(buf), 32)).toEqual(bytes(32, 0)); // ...and so did the stale copy of the buffer
    expect(mem.trace.counters.get(Counter.CacheLinesWrittenBack)).toBe(1);
  });

  it("with the buffer on its own lines the same sequence is correct", () => {
    const buf = BUF + 64;
    cache.cpuRead(unsafePhysAddr(buf), 64);
    cache.cpuWrite(unsafePhysAddr(BUF), bytes(4, 0x99));
    mem.write(physAddr(buf), bytes(64, 0xdd));
    cache.archSyncDmaForCpu(unsafePhysAddr(buf), 64, FROM_DEVICE);
    expect(cache.cpuRead(unsafePhysAddr(buf), 64)).toEqual(bytes(64, 0xdd));
    expect(cache.cpuRead(unsafePhysAddr(BUF), 4)).toEqual(bytes(4, 0x99));
  });
});

describe("coherent devices (snoops)", () => {
  it("snoopDeviceRead writes back dirty lines in the range and keeps them", () => {
    cache.cpuWrite(unsafePhysAddr(BUF), bytes(200, 4));
    cache.cpuWrite(unsafePhysAddr(BUF + 1024), bytes(8, 4));
    cache.snoopDeviceRead(unsafePhysAddr(BUF), 128);
    expect(mem.read(physAddr(BUF), 128)).toEqual(bytes(128, 4));
    expect(mem.read(physAddr(BUF + 128), 8)).toEqual(bytes(8, 0)); // outside the range: still only in the cache
    expect(cache.lines).toBe(5);
    expect(cache.dirtyLines).toBe(3); // bytes 128..199 and the line at +1024
  });

  it("snoopDeviceWrite invalidates, keeping the CPU's bytes of partly covered lines", () => {
    cache.cpuRead(unsafePhysAddr(BUF), 128);
    cache.cpuWrite(unsafePhysAddr(BUF + 120), bytes(8, 0x77)); // dirty bytes the device write does not cover
    cache.snoopDeviceWrite(unsafePhysAddr(BUF), 100);
    mem.write(physAddr(BUF), bytes(100, 0x33)); // the device's bytes reach memory after the snoop
    expect(cache.lines).toBe(0);
    const view = cache.cpuRead(unsafePhysAddr(BUF), 128);
    expect(view.subarray(0, 100)).toEqual(bytes(100, 0x33));
    expect(view.subarray(120)).toEqual(bytes(8, 0x77));
  });
});

describe("capacity and LRU eviction", () => {
  it("evicts the least recently used line, writing it back if dirty", () => {
    const small = new CpuCache(mem, { capacity: 2 });
    small.cpuWrite(unsafePhysAddr(BUF), bytes(1, 1)); // line A dirty
    small.cpuRead(unsafePhysAddr(BUF + 64), 1); // line B
    small.cpuRead(unsafePhysAddr(BUF), 1); // A is now the most recently used
    small.cpuRead(unsafePhysAddr(BUF + 128), 1); // C evicts B (clean: nothing written)
    expect(small.isCached(unsafePhysAddr(BUF + 64))).toBe(false);
    expect(small.evictions).toBe(1);
    expect(mem.read(physAddr(BUF), 1)[0]).toBe(0);
    small.cpuRead(unsafePhysAddr(BUF + 192), 1); // D evicts A, which is dirty: written back
    expect(mem.read(physAddr(BUF), 1)[0]).toBe(1);
    expect(small.lines).toBe(2);
    expect(mem.trace.counters.get(Counter.CacheLinesWrittenBack)).toBe(1);
  });

  it("makes a missing sync intermittent: eviction can hide it", () => {
    const small = new CpuCache(mem, { capacity: 1 });
    small.cpuWrite(unsafePhysAddr(BUF), bytes(64, 8));
    small.cpuRead(unsafePhysAddr(BUF + 4096), 1); // unrelated work evicts the buffer's line
    expect(deviceRead(BUF, 64)).toEqual(bytes(64, 8)); // the bug does not show this time
  });

  it("flushAll writes everything back and empties the cache", () => {
    cache.cpuWrite(unsafePhysAddr(BUF), bytes(300, 6));
    cache.flushAll();
    expect(cache.lines).toBe(0);
    expect(mem.read(physAddr(BUF), 300)).toEqual(bytes(300, 6));
  });
});

describe("bad input", () => {
  it("is refused with CpuCacheError and changes nothing", () => {
    cache.cpuWrite(unsafePhysAddr(BUF), bytes(10, 1));
    const before = { lines: cache.lines, dirty: cache.dirtyLines, mem: mem.read(physAddr(BUF), 64) };
    const calls: (() => unknown)[] = [
      () => {
        cache.cpuWrite(unsafePhysAddr(-1), bytes(1, 0));
      },
      () => cache.cpuRead(unsafePhysAddr(BUF), -1),
      () => cache.cpuRead(unsafePhysAddr(BUF), 0.5),
      () => {
        cache.cpuWrite(unsafePhysAddr(4 * MiB - 8), bytes(16, 0)); // runs past RAM
      },
      () => cache.cpuRead(unsafePhysAddr(64 * MiB), 4),
      () => {
        cache.archSyncDmaForDevice(unsafePhysAddr(BUF), 64, 9 as DmaDirection);
      },
      () => {
        cache.archSyncDmaForCpu(unsafePhysAddr(BUF), 64, DmaDirection.NONE);
      },
      () => {
        cache.snoopDeviceRead(unsafePhysAddr(Number.MAX_SAFE_INTEGER), 2);
      },
    ];
    for (const call of calls) expect(call).toThrow(Error);
    expect(() => cache.cpuRead(unsafePhysAddr(64 * MiB), 4)).toThrow(expect.objectContaining({ code: "EFAULT" }) as Error);
    expect({ lines: cache.lines, dirty: cache.dirtyLines, mem: mem.read(physAddr(BUF), 64) }).toEqual(before);
  });

  it("rejects bad options", () => {
    for (const options of [{ lineSize: 48 }, { lineSize: 8 }, { capacity: 0 }, { capacity: 1.5 }]) {
      expect(() => new CpuCache(mem, options)).toThrow(CpuCacheError);
    }
  });
});
