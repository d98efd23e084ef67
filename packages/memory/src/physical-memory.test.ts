import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Trace } from "@dmasim/trace";
import { Counter } from "./counters.js";
import { GiB, MiB, PAGE_SIZE, TiB, physAddr, unsafePhysAddr } from "./addresses.js";
import { AddressError, MemoryError, MmioNoBackingError, PageStateError, RegionOverlapError, UnmappedAddressError } from "./errors.js";
import { PhysicalMemory } from "./physical-memory.js";
import { SparseStore } from "./sparse-store.js";
import { HOLE, expectBytes, makeMemory, pattern, PEER_BDF } from "./test-fixtures.js";

const BAR = 64 * GiB;

describe("PhysicalMemory: the map", () => {
  it("lists RAM and MMIO regions in address order, like /proc/iomem", () => {
    const mem = makeMemory();
    mem.addMmio(unsafePhysAddr(BAR), 16 * MiB, { name: "0000:03:00.0 BAR2", owner: PEER_BDF });
    expect(mem.regions().map((r) => [r.kind, r.base, r.size, r.name, r.owner])).toEqual([
      ["ram", 0, 2 * GiB, "System RAM", undefined],
      ["ram", 4 * GiB, GiB, "High RAM", undefined],
      ["mmio", BAR, 16 * MiB, "0000:03:00.0 BAR2", PEER_BDF],
    ]);
    expect(Object.isFrozen(mem.regions())).toBe(true);
    expect(mem.iomem().split("\n")).toEqual([
      "00000000-7fffffff : System RAM",
      "100000000-13fffffff : High RAM",
      "1000000000-1000ffffff : 0000:03:00.0 BAR2 (0000:03:00.0)",
    ]);
    expect(mem.regionAt(physAddr(4 * GiB + 5))?.name).toBe("High RAM");
    expect(mem.regionAt(physAddr(HOLE))).toBeUndefined();
    expect(mem.ramBytes).toBe(3 * GiB);
  });

  it("isRam covers whole ranges, joins adjacent RAM regions, and refuses holes and MMIO", () => {
    const mem = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: MiB }, { base: MiB, size: MiB, name: "next" }] });
    mem.addMmio(unsafePhysAddr(4 * MiB), MiB, { name: "bar" });
    expect(mem.isRam(physAddr(MiB - 10), 20)).toBe(true);
    expect(mem.isRam(physAddr(0), 2 * MiB)).toBe(true);
    expect(mem.isRam(physAddr(0), 2 * MiB + 1)).toBe(false);
    expect(mem.isRam(physAddr(4 * MiB), 1)).toBe(false);
    expect(mem.isRam(physAddr(5), 0)).toBe(true);
    expect(mem.isRam(physAddr(3 * MiB), 0)).toBe(false);
    expect(() => mem.isRam(unsafePhysAddr(-1), 1)).toThrow(AddressError);
  });

  it("refuses bad RAM layouts at construction with typed errors", () => {
    const t = new Trace();
    expect(() => new PhysicalMemory(t, { ram: [{ base: 0, size: 2 * MiB }, { base: MiB, size: MiB }] })).toThrow(RegionOverlapError);
    expect(() => new PhysicalMemory(t, { ram: [{ base: 100, size: MiB }] })).toThrow(/options.ram\[0\].base = 0x64/);
    expect(() => new PhysicalMemory(t, { ram: [{ base: 0, size: 0 }] })).toThrow(/options.ram\[0\].size = 0/);
    expect(() => new PhysicalMemory(t, { ram: [{ base: 0, size: 2 ** 53 }] })).toThrow(AddressError);
    expect(() => new PhysicalMemory(t, { ram: undefined as never })).toThrow(/options.ram = undefined/);
    expect(() => new PhysicalMemory(t, { ram: [{ base: 0, size: MiB }], reserved: [{ base: MiB, size: PAGE_SIZE }] })).toThrow(/inside RAM/);
  });

  it("addMmio refuses overlaps, empty names and short backings, leaving the map unchanged", () => {
    const mem = makeMemory();
    mem.addMmio(unsafePhysAddr(BAR), MiB, { name: "bar0" });
    const before = mem.regions();
    expect(() => mem.addMmio(unsafePhysAddr(BAR + MiB - 1), 2, { name: "x" })).toThrow(/overlaps mmio region "bar0"/);
    expect(() => mem.addMmio(unsafePhysAddr(GiB), 2, { name: "x" })).toThrow(/overlaps ram region "System RAM"/);
    expect(() => mem.addMmio(unsafePhysAddr(BAR + 2 * MiB), 0, { name: "x" })).toThrow(/size = 0/);
    expect(() => mem.addMmio(unsafePhysAddr(BAR + 2 * MiB), 16, { name: "" })).toThrow(/options.name/);
    expect(() => mem.addMmio(unsafePhysAddr(BAR + 2 * MiB), 2 * PAGE_SIZE, { name: "x", backing: new SparseStore(PAGE_SIZE) })).toThrow(/options.backing.size = 0x1000 is invalid: expected a backing of at least the region size, 8192 bytes/);
    expect(mem.regions()).toBe(before);
  });

  it("removeMmio takes a BAR away only once its ZONE_DEVICE pages are gone", () => {
    const mem = makeMemory();
    mem.addMmio(unsafePhysAddr(BAR), 4 * MiB, { name: "bar0", backing: new SparseStore(4 * MiB) });
    mem.write(physAddr(BAR), pattern(16));
    mem.pages.addZoneDevice(unsafePhysAddr(BAR), 2 * MiB, { owner: 1, kind: "p2pdma" });
    expect(() => { mem.removeMmio(unsafePhysAddr(BAR)); }).toThrow(PageStateError);
    mem.pages.removeZoneDevice(unsafePhysAddr(BAR), 2 * MiB);
    mem.removeMmio(unsafePhysAddr(BAR));
    expect(mem.regionAt(physAddr(BAR))).toBeUndefined();
    expect(() => mem.read(unsafePhysAddr(BAR), 16)).toThrow(UnmappedAddressError);
    expect(() => { mem.removeMmio(unsafePhysAddr(BAR)); }).toThrow(/no MMIO region starts/);
    expect(() => { mem.removeMmio(unsafePhysAddr(0)); }).toThrow(UnmappedAddressError);
  });
});

describe("PhysicalMemory: bytes", () => {
  it("1 TiB of RAM is instant and holds nothing until written", () => {
    const mem = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: TiB }], confidential: true });
    expectBytes(mem.read(physAddr(TiB - 64), 64), new Uint8Array(64));
    expect(mem.materialisedPages).toBe(0);
    expect(mem.pages.materialisedSections).toBe(0);
    expect(mem.allocator.freeRuns()).toHaveLength(1);
  });

  it("reads and writes across pages and adjacent regions, counting bytes and materialised pages", () => {
    const mem = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: MiB }, { base: MiB, size: MiB, name: "next" }] });
    const c = mem.trace.counters;
    const data = pattern(3 * PAGE_SIZE, 5);
    const at = MiB - PAGE_SIZE - 100;
    mem.write(physAddr(at), data);
    expectBytes(mem.read(physAddr(at), data.length), data);
    const into = new Uint8Array(data.length + 200);
    mem.readInto(physAddr(at - 100), into);
    expectBytes(into.subarray(100, 100 + data.length), data);
    expectBytes(into.subarray(0, 100), new Uint8Array(100));
    expect(c.get(Counter.MemWriteBytes)).toBe(data.length);
    expect(c.get(Counter.MemReadBytes)).toBe(2 * data.length + 200);
    expect(c.get(Counter.MemPagesMaterialised)).toBe(4);
    expect(mem.materialisedPages).toBe(4);
  });

  it("MMIO with a backing reads and writes its store; without one it is ENXIO", () => {
    const mem = makeMemory();
    const backing = new SparseStore(MiB);
    mem.addMmio(unsafePhysAddr(BAR), MiB, { name: "vram", backing });
    mem.addMmio(unsafePhysAddr(BAR + MiB), PAGE_SIZE, { name: "doorbells" });
    mem.write(physAddr(BAR + 8), pattern(8, 2));
    expectBytes(backing.read(8, 8), pattern(8, 2));
    let caught: unknown;
    try {
      mem.read(physAddr(BAR + MiB + 4), 4);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(MmioNoBackingError);
    expect((caught as MmioNoBackingError).code).toBe("ENXIO");
    expect((caught as MmioNoBackingError).addr).toBe(BAR + MiB + 4);
    expect((caught as MmioNoBackingError).message).toContain('MMIO region "doorbells"');
  });

  it("an access touching a hole fails before any byte moves, naming the first missing address", () => {
    const mem = makeMemory();
    const c = mem.trace.counters;
    const end = 2 * GiB;
    let caught: unknown;
    try {
      mem.write(physAddr(end - 10), pattern(20));
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(UnmappedAddressError);
    expect((caught as UnmappedAddressError).addr).toBe(end);
    expect((caught as UnmappedAddressError).code).toBe("EFAULT");
    expect((caught as UnmappedAddressError).message).toContain("0x80000000");
    expectBytes(mem.read(physAddr(end - 10), 10), new Uint8Array(10));
    expect(mem.materialisedPages).toBe(0);
    expect(c.get(Counter.MemWriteBytes)).toBe(0);
    expect(() => { mem.fill(unsafePhysAddr(end - 10), 20, 1); }).toThrow(UnmappedAddressError);
    expect(() => { mem.readInto(unsafePhysAddr(HOLE), new Uint8Array(1)); }).toThrow(UnmappedAddressError);
    expect(mem.materialisedPages).toBe(0);
  });

  it("rejects malformed addresses and lengths with EINVAL", () => {
    const mem = makeMemory();
    for (const fn of [() => mem.read(unsafePhysAddr(-1), 1), () => mem.read(physAddr(0.5), 1), () => mem.read(physAddr(0), -1), () => mem.read(physAddr(Number.NaN), 1), () => { mem.write(physAddr(2 ** 53), new Uint8Array(1)); }, () => { mem.fill(physAddr(0), 1, 300); }]) {
      expect(fn).toThrow(AddressError);
    }
    expect(() => mem.read(unsafePhysAddr(0.5), 1)).toThrow(/phys = 0.5/);
    // A fractional address inside the last region hit must not slip through the fast path.
    mem.write(physAddr(0), new Uint8Array(1));
    expect(() => { mem.write(unsafePhysAddr(1.5), new Uint8Array(1)); }).toThrow(AddressError);
    expect(() => { mem.readInto(unsafePhysAddr(1.5), new Uint8Array(1)); }).toThrow(AddressError);
    let e: unknown;
    try {
      mem.read(unsafePhysAddr(-1), 1);
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(MemoryError);
    expect((e as MemoryError).code).toBe("EINVAL");
  });

  it("zero-length accesses move nothing and need no region", () => {
    const mem = makeMemory();
    expect(mem.read(physAddr(HOLE), 0)).toHaveLength(0);
    mem.write(physAddr(HOLE), new Uint8Array(0));
    mem.fill(physAddr(HOLE), 0, 1);
    expect(mem.trace.counters.snapshot().nonZero()).toEqual({});
    // Inside RAM too (the one-page fast path), an empty write must not materialise its page.
    mem.write(physAddr(PAGE_SIZE), new Uint8Array(1));
    mem.write(physAddr(5 * PAGE_SIZE + 7), new Uint8Array(0));
    expect(mem.materialisedPages).toBe(1);
  });

  it("fill writes the value across regions, and zero-fill of untouched RAM allocates nothing", () => {
    const mem = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: MiB }, { base: MiB, size: MiB }] });
    mem.fill(physAddr(0), 2 * MiB, 0);
    expect(mem.materialisedPages).toBe(0);
    mem.fill(physAddr(MiB - 2), 4, 0x5a);
    expect([...mem.read(physAddr(MiB - 3), 6)]).toEqual([0, 0x5a, 0x5a, 0x5a, 0x5a, 0]);
    expect(mem.trace.counters.get(Counter.MemWriteBytes)).toBe(2 * MiB + 4);
  });

  it("what is written reads back byte-exact across arbitrary page and region crossings; failed calls change nothing (property)", () => {
    // RAM 0..64 KiB, RAM 64..96 KiB (adjacent), hole 96..128 KiB, MMIO with backing 128..160 KiB,
    // MMIO without backing 160..164 KiB.
    const KB = 1024;
    const SPACE = 176 * KB;
    const op = fc.record({
      at: fc.integer({ min: 0, max: SPACE }),
      len: fc.integer({ min: 0, max: 40 * KB }),
      seed: fc.integer({ min: 1, max: 1 << 20 }),
      kind: fc.constantFrom("write", "fill", "read"),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 15 }), (ops) => {
        const mem = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: 64 * KB }, { base: 64 * KB, size: 32 * KB }] });
        mem.addMmio(unsafePhysAddr(128 * KB), 32 * KB, { name: "bar", backing: new SparseStore(32 * KB) });
        mem.addMmio(unsafePhysAddr(160 * KB), 4 * KB, { name: "regs" });
        const model = new Uint8Array(SPACE + 40 * KB);
        const reachable = (a: number, n: number): boolean => n === 0 || (a + n <= 96 * KB) || (a >= 128 * KB && a + n <= 160 * KB);
        const readAll = (): Uint8Array => {
          const out = new Uint8Array(160 * KB);
          out.set(mem.read(physAddr(0), 96 * KB), 0);
          out.set(mem.read(physAddr(128 * KB), 32 * KB), 128 * KB);
          return out;
        };
        for (const o of ops) {
          const ok = reachable(o.at, o.len);
          const snapshot = mem.trace.counters.snapshot();
          try {
            if (o.kind === "write") {
              const data = pattern(o.len, o.seed);
              mem.write(physAddr(o.at), data);
              model.set(data, o.at);
            } else if (o.kind === "fill") {
              mem.fill(physAddr(o.at), o.len, o.seed & 0xff);
              model.fill(o.seed & 0xff, o.at, o.at + o.len);
            } else {
              expectBytes(mem.read(physAddr(o.at), o.len), model.subarray(o.at, o.at + o.len));
            }
            expect(ok).toBe(true);
          } catch (e) {
            if (ok) throw e;
            expect(e).toBeInstanceOf(MemoryError);
            expect(["EFAULT", "ENXIO"]).toContain((e as MemoryError).code);
            expect(mem.trace.counters.snapshot().diff(snapshot).nonZero()).toEqual({});
          }
        }
        const expected = model.slice(0, 160 * KB);
        expected.fill(0, 96 * KB, 128 * KB);
        expectBytes(readAll(), expected);
      }),
      { numRuns: 120 },
    );
  });
});
