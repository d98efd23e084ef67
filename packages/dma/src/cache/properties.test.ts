import { MiB, PhysicalMemory, physAddr, unsafePhysAddr } from "@dmasim/memory";
import { Trace } from "@dmasim/trace";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DmaDirection } from "../constants.js";
import { CpuCache } from "./cpu-cache.js";

const REGION = 16384;
const write = fc.record({ off: fc.nat(REGION - 1), data: fc.uint8Array({ minLength: 1, maxLength: 300 }) });

describe("CPU cache properties", () => {
  it("after syncing for the device, memory equals what the CPU sees", () => {
    fc.assert(
      fc.property(fc.array(write, { maxLength: 40 }), fc.constantFrom(Infinity, 3, 17), (writes, capacity) => {
        const mem = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: 1 * MiB }] });
        const cache = new CpuCache(mem, { capacity });
        const expected = new Uint8Array(REGION + 300);
        for (const w of writes) {
          cache.cpuWrite(unsafePhysAddr(w.off), w.data);
          expected.set(w.data, w.off);
        }
        cache.archSyncDmaForDevice(unsafePhysAddr(0), REGION + 300, DmaDirection.TO_DEVICE);
        expect(cache.dirtyLines).toBe(0);
        // Buffer.equals: vitest's deep equality walks typed arrays element by element, far too slowly here.
        const inMemory = Buffer.from(mem.read(physAddr(0), REGION + 300));
        expect(inMemory.equals(cache.cpuRead(unsafePhysAddr(0), REGION + 300))).toBe(true);
        expect(inMemory.equals(expected)).toBe(true);
      }),
      { numRuns: 100 },
    );
  });

  it("after the device writes and the CPU syncs, the CPU sees exactly the device's bytes", () => {
    fc.assert(
      fc.property(fc.array(write, { maxLength: 20 }), fc.nat(REGION / 64 - 1), fc.integer({ min: 1, max: 64 }), (writes, line, lines) => {
        const mem = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: 1 * MiB }] });
        const cache = new CpuCache(mem);
        for (const w of writes) cache.cpuWrite(unsafePhysAddr(w.off), w.data);
        const buf = line * 64;
        const len = lines * 64;
        cache.archSyncDmaForDevice(unsafePhysAddr(buf), len, DmaDirection.FROM_DEVICE);
        cache.cpuRead(unsafePhysAddr(buf), len); // speculative refills between the syncs
        const device = new Uint8Array(len).map((_, i) => (i * 7 + line) & 0xff);
        mem.write(physAddr(buf), device);
        cache.archSyncDmaForCpu(unsafePhysAddr(buf), len, DmaDirection.FROM_DEVICE);
        expect(Buffer.from(cache.cpuRead(unsafePhysAddr(buf), len)).equals(device)).toBe(true);
      }),
      { numRuns: 100 },
    );
  });
});
