import { MAX_READ_BYTES } from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import { PciError } from "./errors.js";
import { A, switchSpec, withDomains } from "./test-fixtures.js";
import { unsafeDmaAddr } from "./index.js";

// An endpoint's DMA with bad input: a PciError, never a RangeError from a huge allocation, and no TLP.

describe("dmaRead / dmaReadInto / dmaWrite misuse", () => {
  it("an enormous dmaRead is refused before anything is allocated or routed", () => {
    const p = withDomains(switchSpec());
    const ep = p.endpoint(A);
    const before = p.trace.counters.snapshot();
    for (const len of [MAX_READ_BYTES + 1, 2 ** 40, Number.MAX_SAFE_INTEGER]) {
      let err: unknown;
      try {
        ep.dmaRead(unsafeDmaAddr(0x1000), len);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(PciError);
      expect((err as PciError).code).toBe("EINVAL");
      expect((err as Error).message).toMatch(/MAX_READ_BYTES/);
    }
    expect(p.trace.counters.snapshot().diff(before).nonZero()).toEqual({});
  });

  it("lengths, addresses and buffers that are not valid values are refused", () => {
    const p = withDomains(switchSpec());
    const ep = p.endpoint(A);
    for (const v of [Number.NaN, -1, 1.5, "4", 4n, undefined]) {
      expect(() => ep.dmaRead(unsafeDmaAddr(0x1000), v as number)).toThrow(PciError);
      expect(() => ep.dmaRead(unsafeDmaAddr(v as number), 4)).toThrow(PciError);
    }
    for (const b of [undefined, [1, 2], new Int8Array(2), "ab"] as unknown[]) {
      expect(() => { ep.dmaWrite(unsafeDmaAddr(0x1000), b as Uint8Array); }).toThrow(PciError);
      expect(() => { ep.dmaReadInto(unsafeDmaAddr(0x1000), b as Uint8Array); }).toThrow(PciError);
    }
  });
});
