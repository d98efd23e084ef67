import { DmasimInputError } from "@dmasim/trace";
import { describe, expect, it } from "vitest";
import { dmaAddr, unsafeDmaAddr, type DmaAddr } from "./dma-addr.js";
import { PciInputError } from "./errors.js";
import { A, switchSpec, withDomains } from "./test-fixtures.js";
import type { Endpoint } from "./types.js";

describe("dmaAddr() and unsafeDmaAddr()", () => {
  it("dmaAddr brands safe integers >= 0 and rejects the rest with PciInputError naming the value", () => {
    expect(dmaAddr(0)).toBe(0);
    expect(dmaAddr(Number.MAX_SAFE_INTEGER)).toBe(Number.MAX_SAFE_INTEGER);
    for (const bad of [-1, 0.5, Number.NaN, Infinity, 2 ** 53]) {
      let caught: unknown;
      try {
        dmaAddr(bad);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(PciInputError);
      expect(caught).toBeInstanceOf(DmasimInputError);
      expect((caught as PciInputError).code).toBe("EINVAL");
      expect((caught as PciInputError).message).toContain(`dma_addr = ${String(bad)}`);
    }
  });

  it("an endpoint takes a DmaAddr or a BusAddr, never a plain number", () => {
    const ep: Endpoint = withDomains(switchSpec()).endpoint(A);
    expect(unsafeDmaAddr(-1)).toBe(-1); // no check, so no throw: only for values already known good
    // @ts-expect-error a plain number must be branded before a device puts it on the wire
    const a: DmaAddr = 0x1000;
    // @ts-expect-error the same for the endpoint's access methods
    expect(() => ep.dmaRead(a as number, -1)).toThrow(PciInputError);
  });
});
