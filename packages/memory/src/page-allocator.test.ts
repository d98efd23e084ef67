import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Trace } from "@dmasim/trace";
import { Counter } from "./counters.js";
import { GiB, MiB, PAGE_SIZE, TiB, pfnOf, physAddr } from "./addresses.js";
import { AddressError, OutOfMemoryError, PageStateError } from "./errors.js";
import { PageFlag } from "./page-flags.js";
import { PhysicalMemory } from "./physical-memory.js";
import { makeMemory } from "./test-fixtures.js";
import { unsafePhysAddr } from "./index.js";

function small(pages: number, options: { confidential?: boolean } = {}): PhysicalMemory {
  return new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: pages * PAGE_SIZE }], ...options });
}

describe("PageAllocator", () => {
  it("hands out the lowest free run first, marks it Allocated plus the flags asked, and counts pages", () => {
    const mem = makeMemory();
    const a = mem.allocator;
    expect(a.freeBytes).toBe(3 * GiB);
    expect(a.allocPages(1)).toBe(0);
    expect(a.allocPages(3, { flags: PageFlag.SLAB })).toBe(PAGE_SIZE);
    expect(mem.pages.flags(2)).toBe(PageFlag.ALLOCATED | PageFlag.SLAB);
    expect(mem.pages.flags(4)).toBe(0);
    expect(a.allocatedPages).toBe(4);
    expect(a.freeBytes).toBe(3 * GiB - 4 * PAGE_SIZE);
    expect(mem.trace.counters.get(Counter.PageAllocs)).toBe(4);
  });

  it("aligns the first pfn and honours an exclusive `below` limit (DMA32)", () => {
    const mem = makeMemory();
    const a = mem.allocator;
    a.allocPages(1);
    expect(a.allocPages(4, { align: 512 })).toBe(2 * MiB);
    expect(a.allocPages(2)).toBe(PAGE_SIZE); // the hole left under the aligned run is reused
    const low = a.allocPages(1, { below: 4 * GiB });
    expect(low).toBeLessThan(4 * GiB);
    // Fill RAM below 2 GiB, then a DMA32 request fails while ordinary ones go above 4 GiB.
    a.allocPages(a.freeRuns().filter((r) => r.phys < 2 * GiB).reduce((m, r) => Math.max(m, r.pages), 0));
    while (a.freeRuns().some((r) => r.phys < 2 * GiB)) {
      const r = a.freeRuns()[0]!;
      a.allocPages(r.pages, { below: 2 * GiB });
    }
    expect(() => a.allocPages(1, { below: 4 * GiB })).toThrow(OutOfMemoryError);
    expect(a.allocPages(1)).toBe(4 * GiB);
  });

  it("throws ENOMEM naming the request when no run fits, and changes nothing", () => {
    const mem = small(8);
    const a = mem.allocator;
    a.allocPages(1);
    a.allocPages(1);
    a.freePages(unsafePhysAddr(0), 1);
    let caught: unknown;
    try {
      a.allocPages(8);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(OutOfMemoryError);
    expect((caught as OutOfMemoryError).code).toBe("ENOMEM");
    expect((caught as OutOfMemoryError).message).toMatch(/no run of 8 free page\(s\).*7 page\(s\) free, largest free run 6/);
    expect(a.freeRuns()).toEqual([{ phys: 0, pages: 1 }, { phys: 2 * PAGE_SIZE, pages: 6 }]);
    expect(() => a.allocPages(2, { align: 4, below: 4 * PAGE_SIZE })).toThrow(/ending at or below 0x4000/);
  });

  it("frees merge back into one run, and double or foreign frees are PageStateError with nothing changed", () => {
    const mem = small(16);
    const a = mem.allocator;
    const x = a.allocPages(4);
    const y = a.allocPages(4);
    a.freePages(x, 4);
    expect(() => { a.freePages(x, 1); }).toThrow(PageStateError);
    expect(() => { a.freePages(x, 1); }).toThrow(/pfn 0x0 \(0x0\) is not allocated: a double free/);
    // A range that is half allocated is refused as a whole.
    expect(() => { a.freePages(y, 5); }).toThrow(/pfn 0x8/);
    expect(mem.pages.flags(pfnOf(y)) & PageFlag.ALLOCATED).not.toBe(0);
    expect(() => { a.freePages(unsafePhysAddr(16 * PAGE_SIZE), 1); }).toThrow(/is not RAM/);
    expect(() => { a.freePages(unsafePhysAddr(y + 1), 1); }).toThrow(AddressError);
    expect(() => { a.freePages(y, 0); }).toThrow(/count = 0/);
    a.freePages(y, 4);
    expect(a.freeRuns()).toEqual([{ phys: 0, pages: 16 }]);
    expect(a.allocatedPages).toBe(0);
    expect(mem.trace.counters.get(Counter.PageFrees)).toBe(8);
  });

  it("free clears usage flags but keeps the encryption state (the caller re-encrypts)", () => {
    const mem = small(8, { confidential: true });
    const p = mem.allocator.allocPages(2, { flags: PageFlag.STACK });
    mem.setMemoryDecrypted(p, 1);
    mem.allocator.freePages(p, 2);
    expect(mem.pages.flags(0)).toBe(0);
    expect(mem.pages.flags(1)).toBe(PageFlag.ENCRYPTED);
  });

  it("never hands out reserved pages", () => {
    const mem = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: 8 * PAGE_SIZE }], reserved: [{ base: 0, size: 2 * PAGE_SIZE }] });
    expect(mem.pages.flags(0)).toBe(PageFlag.RESERVED);
    expect(mem.allocator.allocPages(6)).toBe(2 * PAGE_SIZE);
    expect(() => mem.allocator.allocPages(1)).toThrow(OutOfMemoryError);
    expect(() => { mem.allocator.freePages(unsafePhysAddr(0), 1); }).toThrow(PageStateError);
  });

  it("rejects malformed requests", () => {
    const a = small(8).allocator;
    expect(() => a.allocPages(0)).toThrow(/count = 0/);
    expect(() => a.allocPages(1, { align: 3 })).toThrow(/align = 0x3/);
    expect(() => a.allocPages(1, { below: -1 })).toThrow(/below = -1/);
    expect(() => a.allocPages(1, { flags: PageFlag.ENCRYPTED })).toThrow(/flags = 0x10/);
    expect(() => a.allocPages(1, { flags: 1 << 14 })).toThrow(AddressError);
    expect(a.allocatedPages).toBe(0);
  });

  it("allocates from 1 TiB without touching descriptors beyond the pages it hands out", () => {
    const mem = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: TiB }] });
    const p = mem.allocator.allocPages(SECTION, { align: SECTION });
    expect(p).toBe(0);
    expect(mem.pages.materialisedSections).toBe(1);
    expect(mem.allocator.freeBytes).toBe(TiB - SECTION * PAGE_SIZE);
  });

  it("allocations never overlap, stay inside RAM, and freeing everything restores capacity (property)", () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant("alloc" as const), count: fc.integer({ min: 1, max: 40 }), alignLog: fc.integer({ min: 0, max: 5 }), belowPages: fc.option(fc.integer({ min: 1, max: 300 }), { nil: undefined }) }),
      fc.record({ kind: fc.constant("free" as const), pick: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const mem = new PhysicalMemory(new Trace(), { ram: [{ base: 0, size: 128 * PAGE_SIZE }, { base: 200 * PAGE_SIZE, size: 100 * PAGE_SIZE }] });
        const a = mem.allocator;
        const total = a.freeBytes;
        const live: { pfn: number; count: number }[] = [];
        const owner = new Map<number, number>();
        for (const o of ops) {
          if (o.kind === "alloc") {
            const align = 2 ** o.alignLog;
            const opts = o.belowPages === undefined ? { align } : { align, below: o.belowPages * PAGE_SIZE };
            let phys: number;
            try {
              phys = a.allocPages(o.count, opts);
            } catch (e) {
              expect(e).toBeInstanceOf(OutOfMemoryError);
              continue;
            }
            const pfn = phys / PAGE_SIZE;
            expect(pfn % align).toBe(0);
            if (o.belowPages !== undefined) expect(pfn + o.count).toBeLessThanOrEqual(o.belowPages);
            expect(mem.isRam(physAddr(phys), o.count * PAGE_SIZE)).toBe(true);
            for (let p = pfn; p < pfn + o.count; p++) {
              expect(owner.has(p)).toBe(false);
              owner.set(p, live.length);
            }
            live.push({ pfn, count: o.count });
          } else if (live.length > 0) {
            const [victim] = live.splice(o.pick % live.length, 1);
            a.freePages(unsafePhysAddr(victim!.pfn * PAGE_SIZE), victim!.count);
            for (let p = victim!.pfn; p < victim!.pfn + victim!.count; p++) owner.delete(p);
          }
          expect(a.allocatedPages).toBe(owner.size);
          expect(a.freeBytes).toBe(total - owner.size * PAGE_SIZE);
        }
        for (const l of live) a.freePages(unsafePhysAddr(l.pfn * PAGE_SIZE), l.count);
        expect(a.freeBytes).toBe(total);
        expect(a.freeRuns()).toEqual([{ phys: 0, pages: 128 }, { phys: 200 * PAGE_SIZE, pages: 100 }]);
      }),
      { numRuns: 150 },
    );
  });
});

const SECTION = 32768;
