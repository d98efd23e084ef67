import { describe, expect, it } from "vitest";
import { Trace } from "@dmasim/trace";
import { Counter } from "./counters.js";
import { GiB, MiB, PAGE_SIZE, TiB, pfnOf, unsafePhysAddr } from "./addresses.js";
import { AddressError, PageStateError, RegionOverlapError, UnmappedAddressError } from "./errors.js";
import { PageFlag, pageFlagNames } from "./page-flags.js";
import { SECTION_PAGES } from "./page-descriptors.js";
import { PhysicalMemory } from "./physical-memory.js";
import { HOLE, makeMemory, PEER_BDF } from "./test-fixtures.js";

const BAR = 64 * GiB;

describe("PageDescriptors", () => {
  it("has a struct page for RAM frames only, until ZONE_DEVICE pages are added", () => {
    const mem = makeMemory();
    expect(mem.pages.hasPage(0)).toBe(true);
    expect(mem.pages.hasPage(pfnOf(unsafePhysAddr(2 * GiB)) - 1)).toBe(true);
    expect(mem.pages.hasPage(pfnOf(unsafePhysAddr(2 * GiB)))).toBe(false);
    expect(mem.pages.hasPage(pfnOf(unsafePhysAddr(4 * GiB)))).toBe(true);
    expect(mem.pages.hasPage(-1)).toBe(false);
    expect(mem.pages.hasPage(0.5)).toBe(false);
    expect(mem.pages.flags(12345)).toBe(0);
    expect(mem.pages.owner(12345)).toBe(0);
  });

  it("throws a typed error naming the frame when it has no struct page", () => {
    const mem = makeMemory();
    const pfn = pfnOf(unsafePhysAddr(HOLE));
    expect(() => mem.pages.flags(pfn)).toThrow(UnmappedAddressError);
    expect(() => mem.pages.flags(pfn)).toThrow(`pfn 0x${pfn.toString(16)} has no struct page`);
    expect(() => mem.pages.owner(pfn)).toThrow(UnmappedAddressError);
    expect(() => mem.pages.flags(1.5)).toThrow(AddressError);
  });

  it("counts every flags()/owner() call as a descriptor lookup, and nothing else does", () => {
    const mem = makeMemory();
    const c = mem.trace.counters;
    mem.pages.hasPage(1);
    mem.pages.setFlags(1, 3, PageFlag.SLAB);
    mem.allocator.allocPages(2);
    expect(c.get(Counter.PageDescLookups)).toBe(0);
    mem.pages.flags(1);
    mem.pages.owner(1);
    mem.pages.flags(2);
    expect(c.get(Counter.PageDescLookups)).toBe(3);
  });

  it("is sparse: 1 TiB of RAM materialises nothing until a flag changes, then one section", () => {
    const mem = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: 1 * TiB }] });
    expect(mem.pages.materialisedSections).toBe(0);
    expect(mem.pages.flags(pfnOf(unsafePhysAddr(TiB)) - 1)).toBe(0);
    mem.pages.setFlags(pfnOf(unsafePhysAddr(TiB)) - 1, 1, PageFlag.STACK);
    expect(mem.pages.materialisedSections).toBe(1);
    expect(mem.pages.flags(pfnOf(unsafePhysAddr(TiB)) - 1)).toBe(PageFlag.STACK);
    expect(mem.pages.flags(pfnOf(unsafePhysAddr(TiB)) - 2)).toBe(0);
  });

  it("setFlags/clearFlags change exactly the pages asked, across a section boundary", () => {
    const mem = makeMemory();
    const start = SECTION_PAGES - 2;
    mem.pages.setFlags(start, 4, PageFlag.SLAB | PageFlag.KERNEL_TEXT);
    mem.pages.clearFlags(start + 1, 2, PageFlag.KERNEL_TEXT);
    const got = [start - 1, start, start + 1, start + 2, start + 3, start + 4].map((p) => pageFlagNames(mem.pages.flags(p)));
    expect(got).toEqual(["0", "slab|kernel_text", "slab", "slab", "slab|kernel_text", "0"]);
  });

  it("refuses flag changes that are malformed, reach a hole, or touch PageFlag.ALLOCATED, changing nothing", () => {
    const mem = makeMemory();
    const last = pfnOf(unsafePhysAddr(2 * GiB)) - 1;
    expect(() => { mem.pages.setFlags(last, 2, PageFlag.SLAB); }).toThrow(UnmappedAddressError);
    expect(mem.pages.flags(last)).toBe(0);
    expect(() => { mem.pages.setFlags(1, 1, PageFlag.ALLOCATED); }).toThrow(/only the page allocator/);
    expect(() => { mem.pages.clearFlags(1, 1, PageFlag.ALLOCATED); }).toThrow(AddressError);
    expect(() => { mem.pages.setFlags(1, 1, 1 << 12); }).toThrow(/flags = 0x1000 is invalid/);
    expect(() => { mem.pages.setFlags(-1, 1, PageFlag.SLAB); }).toThrow(/pfn = -1/);
    expect(() => { mem.pages.setFlags(1, 1.5, PageFlag.SLAB); }).toThrow(/count = 1.5/);
    expect(mem.pages.materialisedSections).toBe(0);
  });

  it("ZONE_DEVICE p2pdma pages live in a BAR, carry their owner, and go away with removeZoneDevice", () => {
    const mem = makeMemory();
    mem.addMmio(unsafePhysAddr(BAR), 256 * MiB, { name: "BAR0", owner: PEER_BDF });
    const pfn = pfnOf(unsafePhysAddr(BAR));
    expect(mem.pages.hasPage(pfn)).toBe(false);
    mem.pages.addZoneDevice(unsafePhysAddr(BAR), 128 * MiB, { owner: 7, kind: "p2pdma" });
    expect(mem.pages.hasPage(pfn)).toBe(true);
    expect(mem.pages.flags(pfn)).toBe(PageFlag.ZONE_DEVICE | PageFlag.P2PDMA);
    expect(mem.pages.owner(pfn + 100)).toBe(7);
    expect(mem.pages.hasPage(pfnOf(unsafePhysAddr(BAR + 128 * MiB)))).toBe(false);
    mem.pages.setFlags(pfn, 1, PageFlag.RESERVED);
    expect(mem.pages.flags(pfn)).toBe(PageFlag.ZONE_DEVICE | PageFlag.P2PDMA | PageFlag.RESERVED);
    mem.pages.removeZoneDevice(unsafePhysAddr(BAR), 128 * MiB);
    expect(mem.pages.hasPage(pfn)).toBe(false);
    expect(() => mem.pages.flags(pfn)).toThrow(UnmappedAddressError);
    // Added again, the pages start fresh: nothing left over from the earlier pgmap.
    mem.pages.addZoneDevice(unsafePhysAddr(BAR), 128 * MiB, { owner: 8, kind: "p2pdma" });
    expect(mem.pages.flags(pfn)).toBe(PageFlag.ZONE_DEVICE | PageFlag.P2PDMA);
    expect(mem.pages.owner(pfn)).toBe(8);
  });

  it("device-private pages take a hole of the physical map and the CPU still cannot access them", () => {
    const mem = makeMemory();
    mem.pages.addZoneDevice(unsafePhysAddr(HOLE), 4 * MiB, { owner: 3, kind: "device-private" });
    expect(mem.pages.flags(pfnOf(unsafePhysAddr(HOLE)))).toBe(PageFlag.ZONE_DEVICE | PageFlag.DEVICE_PRIVATE);
    expect(() => mem.read(unsafePhysAddr(HOLE), 1)).toThrow(UnmappedAddressError);
    expect(() => mem.addMmio(unsafePhysAddr(HOLE), PAGE_SIZE, { name: "late BAR" })).toThrow(RegionOverlapError);
    expect(() => { mem.pages.addZoneDevice(unsafePhysAddr(0), 4 * MiB, { owner: 3, kind: "device-private" }); }).toThrow(/overlaps ram pages \[0x0, 0x80000000\)/);
    mem.addMmio(unsafePhysAddr(BAR), 16 * MiB, { name: "BAR0" });
    expect(() => { mem.pages.addZoneDevice(unsafePhysAddr(BAR), 4 * MiB, { owner: 3, kind: "device-private" }); }).toThrow(/device-private pages need a hole/);
  });

  it("rejects bad ZONE_DEVICE ranges with typed errors and leaves the pages as they were", () => {
    const mem = makeMemory();
    mem.addMmio(unsafePhysAddr(BAR), 16 * MiB, { name: "BAR0" });
    const cases: [() => void, new (...args: never[]) => Error, RegExp][] = [
      [() => { mem.pages.addZoneDevice(unsafePhysAddr(BAR + 1), 4096, { owner: 1, kind: "p2pdma" }); }, AddressError, /page-aligned/],
      [() => { mem.pages.addZoneDevice(unsafePhysAddr(BAR), 0, { owner: 1, kind: "p2pdma" }); }, AddressError, /size = 0/],
      [() => { mem.pages.addZoneDevice(unsafePhysAddr(BAR), 32 * MiB, { owner: 1, kind: "p2pdma" }); }, AddressError, /inside one MMIO region/],
      [() => { mem.pages.addZoneDevice(unsafePhysAddr(0), 4096, { owner: 1, kind: "p2pdma" }); }, RegionOverlapError, /overlaps ram pages/],
      [() => { mem.pages.addZoneDevice(unsafePhysAddr(HOLE), 4096, { owner: 1, kind: "p2pdma" }); }, AddressError, /inside one MMIO region/],
      [() => { mem.pages.addZoneDevice(unsafePhysAddr(BAR), 4096, { owner: 0, kind: "p2pdma" }); }, AddressError, /owner = 0/],
      [() => { mem.pages.addZoneDevice(unsafePhysAddr(BAR), 4096, { owner: 1, kind: "fsdax" as "p2pdma" }); }, AddressError, /kind = "fsdax"/],
      [() => { mem.pages.removeZoneDevice(unsafePhysAddr(BAR), 4096); }, PageStateError, /no ZONE_DEVICE range is exactly/],
    ];
    for (const [fn, type, message] of cases) {
      expect(fn).toThrow(type);
      expect(fn).toThrow(message);
    }
    mem.pages.addZoneDevice(unsafePhysAddr(BAR), 8 * MiB, { owner: 1, kind: "p2pdma" });
    expect(() => { mem.pages.addZoneDevice(unsafePhysAddr(BAR + 4 * MiB), 8 * MiB, { owner: 2, kind: "p2pdma" }); }).toThrow(RegionOverlapError);
    expect(mem.pages.owner(pfnOf(unsafePhysAddr(BAR + 4 * MiB)))).toBe(1);
    expect(mem.pages.hasPage(pfnOf(unsafePhysAddr(BAR + 8 * MiB)))).toBe(false);
    expect(mem.pages.ranges().map((r) => r.kind)).toEqual(["ram", "ram", "p2pdma"]);
  });
});

describe("confidential guests", () => {
  it("start with every RAM page private; set_memory_decrypted/encrypted flip exactly the range", () => {
    const mem = makeMemory({ confidential: true });
    expect(mem.confidential).toBe(true);
    expect(mem.pages.flags(0) & PageFlag.ENCRYPTED).not.toBe(0);
    expect(mem.pages.flags(pfnOf(unsafePhysAddr(4 * GiB)) + 5) & PageFlag.ENCRYPTED).not.toBe(0);
    mem.setMemoryDecrypted(unsafePhysAddr(1 * MiB), 4);
    const enc = (p: number): boolean => (mem.pages.flags(p) & PageFlag.ENCRYPTED) !== 0;
    expect([255, 256, 259, 260].map(enc)).toEqual([true, false, false, true]);
    mem.setMemoryEncrypted(unsafePhysAddr(1 * MiB + PAGE_SIZE), 2);
    expect([256, 257, 258, 259].map(enc)).toEqual([false, true, true, false]);
  });

  it("refuses to change encryption of non-RAM or misaligned ranges, changing nothing", () => {
    const mem = makeMemory({ confidential: true });
    const last = 2 * GiB - PAGE_SIZE;
    expect(() => { mem.setMemoryDecrypted(unsafePhysAddr(last), 2); }).toThrow(UnmappedAddressError);
    expect(mem.pages.flags(pfnOf(unsafePhysAddr(last))) & PageFlag.ENCRYPTED).not.toBe(0);
    expect(() => { mem.setMemoryDecrypted(unsafePhysAddr(100), 1); }).toThrow(/page-aligned/);
    expect(() => { mem.setMemoryEncrypted(unsafePhysAddr(0), -1); }).toThrow(/nrPages = -1/);
  });

  it("is a no-op on a machine that is not confidential, like the kernel without CC_ATTR_MEM_ENCRYPT", () => {
    const mem = makeMemory();
    mem.setMemoryDecrypted(unsafePhysAddr(0), 16);
    mem.setMemoryEncrypted(unsafePhysAddr(0), 16);
    expect(mem.pages.flags(0)).toBe(0);
    expect(mem.pages.materialisedSections).toBe(0);
  });
});
