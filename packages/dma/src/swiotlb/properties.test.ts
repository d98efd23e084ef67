import { MiB, PhysicalMemory, physAddr, unsafePhysAddr } from "@dmasim/memory";
import { Trace } from "@dmasim/trace";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DMA_MAPPING_ERROR, DmaDirection } from "../constants.js";
import { IO_TLB_SEGSIZE, IO_TLB_SIZE } from "./constants.js";
import { SwiotlbPool } from "./pool.js";

const mapOp = fc.record({
  kind: fc.constant("map" as const),
  orig: fc.integer({ min: 2 * MiB, max: 8 * MiB - 70000 }),
  size: fc.integer({ min: 1, max: 70000 }),
  minAlignMask: fc.constantFrom(0, 0xfff),
  allocAlignMask: fc.constantFrom(0, 0xfff),
  cpu: fc.nat(7),
});
const unmapOp = fc.record({ kind: fc.constant("unmap" as const), pick: fc.nat() });

describe("swiotlb properties", () => {
  it("never hands out overlapping live buffers and frees everything at the end", () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(mapOp, mapOp, unmapOp), { maxLength: 60 }), (ops) => {
        const mem = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: 16 * MiB }] });
        const pool = new SwiotlbPool(mem, { size: 1 * MiB, nareas: 2 });
        const live: { tlb: number; size: number; dev: { name: string; minAlignMask: number } }[] = [];
        for (const o of ops) {
          if (o.kind === "map") {
            const dev = { name: "d", minAlignMask: o.minAlignMask };
            const tlb = pool.tblMapSingle(dev, unsafePhysAddr(o.orig), o.size, o.allocAlignMask, DmaDirection.TO_DEVICE, 0, o.cpu);
            if (tlb === DMA_MAPPING_ERROR) continue;
            expect(tlb).toBeGreaterThanOrEqual(pool.start);
            expect(tlb + o.size).toBeLessThanOrEqual(pool.end);
            // Within one segment.
            const seg = (a: number): number => Math.floor((a - pool.start) / (IO_TLB_SIZE * IO_TLB_SEGSIZE));
            expect(seg(tlb)).toBe(seg(tlb + o.size - 1));
            for (const other of live) expect(tlb + o.size <= other.tlb || other.tlb + other.size <= tlb).toBe(true);
            live.push({ tlb, size: o.size, dev });
          } else if (live.length > 0) {
            const m = live.splice(o.pick % live.length, 1)[0]!;
            pool.tblUnmapSingle(m.dev, unsafePhysAddr(m.tlb), m.size, DmaDirection.TO_DEVICE, 0);
          }
        }
        for (const m of live) pool.tblUnmapSingle(m.dev, unsafePhysAddr(m.tlb), m.size, DmaDirection.TO_DEVICE, 0);
        expect(pool.stats).toMatchObject({ used: 0, mappings: 0 });
        // Every segment is whole again: a full 256 KiB mapping fits in each.
        const dev = { name: "d", minAlignMask: 0 };
        for (let i = 0; i < pool.nslabs / IO_TLB_SEGSIZE; i++) {
          expect(pool.tblMapSingle(dev, unsafePhysAddr(0), 256 * 1024, 0, DmaDirection.TO_DEVICE, 0, 0)).not.toBe(DMA_MAPPING_ERROR);
        }
      }),
      { numRuns: 60 },
    );
  });

  it("after map, a device write and unmap, the original holds exactly the device's bytes", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2 * MiB, max: 3 * MiB }), // above the pool, which takes the lowest RAM
        fc.uint8Array({ minLength: 1, maxLength: 20000 }),
        fc.constantFrom(0, 0xfff),
        fc.constantFrom(DmaDirection.FROM_DEVICE, DmaDirection.BIDIRECTIONAL),
        (orig, deviceBytes, minAlignMask, dir) => {
          const mem = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: 8 * MiB }] });
          const pool = new SwiotlbPool(mem, { size: 1 * MiB });
          const dev = { name: "d", minAlignMask };
          mem.fill(physAddr(orig), deviceBytes.length, 0x5c);
          mem.fill(physAddr(orig - 1), 1, 0x11); // neighbours must survive
          mem.fill(physAddr(orig + deviceBytes.length), 1, 0x22);
          const tlb = pool.tblMapSingle(dev, unsafePhysAddr(orig), deviceBytes.length, 0, dir, 0, 0);
          mem.write(physAddr(tlb), deviceBytes);
          pool.tblUnmapSingle(dev, unsafePhysAddr(tlb), deviceBytes.length, dir, 0);
          expect(mem.read(physAddr(orig), deviceBytes.length)).toEqual(deviceBytes);
          expect(mem.read(physAddr(orig - 1), 1)[0]).toBe(0x11);
          expect(mem.read(physAddr(orig + deviceBytes.length), 1)[0]).toBe(0x22);
        },
      ),
      { numRuns: 100 },
    );
  });
});
