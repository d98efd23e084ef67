import { describe, expect, it } from "vitest";
import { DmasimError, DmasimInputError, DmasimStateError, TraceInputError, hex, hex16, hex64, showValue } from "./errors.js";

describe("the error base", () => {
  it("bad input names the function, argument, value and expectation, with code EINVAL", () => {
    const e = new DmasimInputError("dma_map_phys", "size", -1, "a size > 0");
    expect(e).toBeInstanceOf(DmasimError);
    expect(e.code).toBe("EINVAL");
    expect(e.message).toBe("dma_map_phys: size = -1 is invalid: expected a size > 0");
    expect([e.fn, e.argument, e.value, e.expected]).toEqual(["dma_map_phys", "size", -1, "a size > 0"]);
  });
  it("state errors carry the kernel's errno", () => {
    const e = new DmasimStateError("EBUSY", "busy");
    expect(e).toBeInstanceOf(DmasimError);
    expect(e.code).toBe("EBUSY");
    expect(e.name).toBe("DmasimStateError");
  });
  it("subclasses keep their own name", () => {
    const e = new TraceInputError("ns", Number.NaN, "a number");
    expect(e).toBeInstanceOf(DmasimInputError);
    expect(e.name).toBe("TraceInputError");
    expect(e.message).toBe("ns = NaN is invalid: expected a number");
  });
});

describe("formatters", () => {
  it("hex prints safe non-negative integers in hex and anything else as is", () => {
    expect(hex(4096)).toBe("0x1000");
    expect(hex(-1)).toBe("-1");
    expect(hex(1.5)).toBe("1.5");
    expect(hex16(0x15)).toBe("0x0015");
    expect(hex64(0x1000)).toBe("0x0000000000001000");
    expect(hex64(-1)).toBe("0xffffffffffffffff");
  });
  it("showValue never throws and shows every kind of value", () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(showValue(16)).toBe("0x10");
    expect(showValue(-2)).toBe("-2");
    expect(showValue(10n)).toBe("10n");
    expect(showValue("x")).toBe('"x"');
    expect(showValue(undefined)).toBe("undefined");
    expect(showValue(null)).toBe("null");
    expect(showValue({ a: 1 })).toBe('{"a":1}');
    expect(showValue(new Uint8Array(3))).toBe("Uint8Array(3)");
    expect(showValue(cyclic)).toBe("[object Object]");
    expect(showValue(Symbol("s"))).toBe("Symbol(s)");
    expect(showValue(function f() { return 1; })).toBe("[function f]");
  });
});
