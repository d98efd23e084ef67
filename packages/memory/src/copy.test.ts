import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Counter } from "./counters.js";
import { GiB, MiB, PAGE_SIZE, unsafePhysAddr } from "./addresses.js";
import { AddressError, MmioNoBackingError, UnmappedAddressError } from "./errors.js";
import { SparseStore } from "./sparse-store.js";
import { HOLE, makeMemory, pattern } from "./test-fixtures.js";

const BAR = 64 * GiB;

describe("PhysicalMemory.copy (memcpy within physical memory)", () => {
  it("moves the bytes store to store, unwritten source pages as zeros, and counts both sides", () => {
    const mem = makeMemory();
    mem.addMmio(unsafePhysAddr(BAR), 16 * MiB, { name: "bar", backing: new SparseStore(16 * MiB) });
    const data = pattern(3 * PAGE_SIZE + 100, 7);
    mem.write(unsafePhysAddr(BAR + 50), data);
    const before = mem.trace.counters.snapshot();
    mem.copy(unsafePhysAddr(PAGE_SIZE + 9), unsafePhysAddr(BAR), 8 * PAGE_SIZE);
    const want = new Uint8Array(8 * PAGE_SIZE);
    want.set(data, 50);
    expect(mem.read(unsafePhysAddr(PAGE_SIZE + 9), 8 * PAGE_SIZE)).toEqual(want);
    const d = mem.trace.counters.snapshot().diff(before);
    expect(d.get(Counter.MemReadBytes)).toBe(8 * PAGE_SIZE + 8 * PAGE_SIZE);
    expect(d.get(Counter.MemWriteBytes)).toBe(8 * PAGE_SIZE);
  });

  it("equals readInto + write for any ranges (across regions too)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 64 * PAGE_SIZE }), fc.integer({ min: 0, max: 64 * PAGE_SIZE }), fc.integer({ min: 1, max: 20 * PAGE_SIZE }), (so, dOff, len) => {
        const mem = makeMemory();
        mem.addMmio(unsafePhysAddr(BAR), 16 * MiB, { name: "bar", backing: new SparseStore(16 * MiB) });
        mem.write(unsafePhysAddr(BAR + 4 * PAGE_SIZE), pattern(40 * PAGE_SIZE, 3));
        const src = BAR + so;
        const dst = 2 * GiB - 30 * PAGE_SIZE + dOff; // may run from "System RAM" into the hole: refused
        const want = mem.read(unsafePhysAddr(src), len);
        let ok = true;
        try {
          mem.copy(unsafePhysAddr(dst), unsafePhysAddr(src), len);
        } catch (e) {
          expect(e).toBeInstanceOf(UnmappedAddressError);
          ok = false;
        }
        if (ok) expect(mem.read(unsafePhysAddr(dst), len)).toEqual(want);
      }),
      { numRuns: 40 },
    );
  });

  it("refuses overlap, holes and unbacked MMIO before moving anything", () => {
    const mem = makeMemory();
    mem.addMmio(unsafePhysAddr(BAR), MiB, { name: "nobacking" });
    mem.write(unsafePhysAddr(0), pattern(2 * PAGE_SIZE, 1));
    expect(() => {
      mem.copy(unsafePhysAddr(PAGE_SIZE), unsafePhysAddr(0), 2 * PAGE_SIZE);
    }).toThrow(AddressError);
    expect(() => {
      mem.copy(unsafePhysAddr(HOLE), unsafePhysAddr(0), PAGE_SIZE);
    }).toThrow(UnmappedAddressError);
    expect(() => {
      mem.copy(unsafePhysAddr(0), unsafePhysAddr(BAR), PAGE_SIZE);
    }).toThrow(MmioNoBackingError);
    expect(mem.read(unsafePhysAddr(0), 2 * PAGE_SIZE)).toEqual(pattern(2 * PAGE_SIZE, 1));
  });
});
