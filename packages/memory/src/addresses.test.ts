import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { GiB, KiB, MiB, PAGE_SHIFT, PAGE_SIZE, TiB, isPageAligned, pfnOf, pfnToPhys, physAddr, unsafePhysAddr } from "./addresses.js";
import type { PhysAddr } from "./addresses.js";
import { AddressError, MemoryError } from "./errors.js";

describe("addresses", () => {
  it("has the kernel's page geometry and binary units", () => {
    expect(PAGE_SIZE).toBe(2 ** PAGE_SHIFT);
    expect([KiB, MiB, GiB, TiB]).toEqual([2 ** 10, 2 ** 20, 2 ** 30, 2 ** 40]);
  });

  it("physAddr accepts safe integers >= 0 and rejects the rest with a typed EINVAL", () => {
    expect(physAddr(0)).toBe(0);
    expect(physAddr(Number.MAX_SAFE_INTEGER)).toBe(Number.MAX_SAFE_INTEGER);
    for (const bad of [-1, 1.5, Number.NaN, Infinity, 2 ** 53]) {
      let caught: unknown;
      try {
        physAddr(bad);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(AddressError);
      expect(caught).toBeInstanceOf(MemoryError);
      expect((caught as AddressError).code).toBe("EINVAL");
      expect((caught as AddressError).message).toContain(`phys = ${String(bad)}`);
    }
  });

  it("unsafePhysAddr brands without checking; a plain number is not a PhysAddr to the type checker", () => {
    expect(unsafePhysAddr(0x1000)).toBe(0x1000);
    // The cast is for values already known good: it does not check, so it does not throw either.
    expect(unsafePhysAddr(-1)).toBe(-1);
    // @ts-expect-error a plain number must go through physAddr() or unsafePhysAddr() to become a PhysAddr
    const p: PhysAddr = 0x2000;
    const q: number = physAddr(0x3000); // a brand widens to number wherever a number is taken
    expect([p, q]).toEqual([0x2000, 0x3000]);
  });

  it("pfnOf does not wrap above 4 GiB or 16 TiB (no 32-bit operators)", () => {
    expect(pfnOf(unsafePhysAddr(4 * GiB))).toBe(1 << 20);
    expect(pfnOf(unsafePhysAddr(16 * TiB + 4095))).toBe(2 ** 32);
    expect(pfnToPhys(2 ** 32)).toBe(16 * TiB);
    expect(() => pfnToPhys(2 ** 41)).toThrow(AddressError);
    expect(() => pfnToPhys(-1)).toThrow(/pfn = -1/);
  });

  it("pfnToPhys(pfnOf(p)) is p rounded down to its page (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 52 }), (p) => {
        const base = pfnToPhys(pfnOf(unsafePhysAddr(p)));
        expect(base).toBeLessThanOrEqual(p);
        expect(p - base).toBeLessThan(PAGE_SIZE);
        expect(isPageAligned(base)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });
});
