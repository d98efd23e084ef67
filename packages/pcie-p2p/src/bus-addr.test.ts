import { DmasimInputError } from "@dmasim/trace";
import { describe, expect, it } from "vitest";
import { busAddr, unsafeBusAddr } from "./bus-addr.js";
import { PciError, PciInputError } from "./errors.js";
import type { BusAddr } from "./types.js";

describe("busAddr() and unsafeBusAddr()", () => {
  it("busAddr brands safe integers >= 0 and rejects the rest with PciInputError naming the value", () => {
    expect(busAddr(0)).toBe(0);
    expect(busAddr(Number.MAX_SAFE_INTEGER)).toBe(Number.MAX_SAFE_INTEGER);
    for (const bad of [-1, 0.5, Number.NaN, Infinity, 2 ** 53]) {
      let caught: unknown;
      try {
        busAddr(bad);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(PciInputError);
      expect(caught).toBeInstanceOf(PciError);
      expect(caught).toBeInstanceOf(DmasimInputError);
      expect((caught as PciInputError).code).toBe("EINVAL");
      expect((caught as PciInputError).message).toContain(`bus = ${String(bad)}`);
    }
  });

  it("unsafeBusAddr casts without checking; a plain number is not a BusAddr to the type checker", () => {
    expect(unsafeBusAddr(0x8000_0000)).toBe(0x8000_0000);
    expect(unsafeBusAddr(-1)).toBe(-1); // no check, so no throw: only for values already known good
    // @ts-expect-error a plain number must go through busAddr() or unsafeBusAddr() to become a BusAddr
    const b: BusAddr = 0x1000;
    expect(b).toBe(0x1000);
  });
});
