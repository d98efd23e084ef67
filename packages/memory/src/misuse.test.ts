import { describe, expect, it } from "vitest";
import { GiB, MAX_READ_BYTES, physAddr, unsafePhysAddr } from "./addresses.js";
import { AddressError, UnmappedAddressError } from "./errors.js";
import { HOLE, makeMemory } from "./test-fixtures.js";

// Bad input to physical memory: a typed AddressError naming the argument, never a TypeError or a huge
// host allocation, and nothing is written or counted.

describe("PhysicalMemory write / readInto / read misuse", () => {
  const notBytes: readonly unknown[] = [undefined, null, "abcd", [1, 2, 3], new Int8Array(4), new Uint16Array(2), new ArrayBuffer(4), { length: 4 }, 7];

  it("write and readInto take a Uint8Array and nothing else", () => {
    const mem = makeMemory();
    mem.write(physAddr(0x1000), new Uint8Array([9, 9, 9, 9]));
    const before = mem.trace.counters.snapshot();
    for (const v of notBytes) {
      for (const call of [() => { mem.write(physAddr(0x1000), v as Uint8Array); }, () => { mem.readInto(physAddr(0x1000), v as Uint8Array); }]) {
        let err: unknown;
        try {
          call();
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(AddressError);
        expect(["bytes", "dst"]).toContain((err as AddressError).argument);
      }
    }
    expect(mem.trace.counters.snapshot().diff(before).nonZero()).toEqual({});
    expect(Array.from(mem.read(physAddr(0x1000), 4))).toEqual([9, 9, 9, 9]);
    // A Buffer is a Uint8Array: accepted.
    mem.write(physAddr(0x1000), Buffer.from([1, 2]));
    expect(Array.from(mem.read(physAddr(0x1000), 2))).toEqual([1, 2]);
  });

  it("an enormous read is refused before any buffer is allocated", () => {
    const mem = makeMemory();
    expect(() => mem.read(unsafePhysAddr(0), MAX_READ_BYTES + 1)).toThrow(AddressError);
    expect(() => mem.read(unsafePhysAddr(0), 2 ** 52)).toThrow(AddressError);
    for (const len of [Number.NaN, -1, 1.5, "8", 8n]) expect(() => mem.read(unsafePhysAddr(0), len as number)).toThrow(AddressError);
  });

  it("a read of a hole is refused before the buffer is allocated, and counts nothing", () => {
    const mem = makeMemory();
    const before = mem.trace.counters.snapshot();
    expect(() => mem.read(unsafePhysAddr(HOLE), 64)).toThrow(UnmappedAddressError);
    expect(() => mem.read(unsafePhysAddr(2 * GiB - 16), 64)).toThrow(UnmappedAddressError);
    expect(mem.trace.counters.snapshot().diff(before).nonZero()).toEqual({});
  });
});
