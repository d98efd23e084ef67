import { describe, expect, it } from "vitest";
import { DmasimError, DmasimInputError, DmasimStateError } from "@dmasim/trace";
import { AddressError, MemoryError, OutOfMemoryError, PageStateError, UnmappedAddressError } from "./errors.js";

describe("memory errors on the dmasim base", () => {
  it("bad input is a DmasimInputError and still a MemoryError; state errors are DmasimStateErrors", () => {
    const bad = new AddressError("phys", -1, "a safe integer >= 0");
    expect(bad).toBeInstanceOf(DmasimInputError);
    expect(bad).toBeInstanceOf(MemoryError);
    expect(bad).not.toBeInstanceOf(DmasimStateError);
    expect(bad.code).toBe("EINVAL");
    expect([bad.argument, bad.value, bad.expected]).toEqual(["phys", -1, "a safe integer >= 0"]);
    expect(bad.message).toBe("phys = -1 is invalid: expected a safe integer >= 0");

    const hole = new UnmappedAddressError(0x1000, "read");
    expect(hole).toBeInstanceOf(DmasimStateError);
    expect(hole).toBeInstanceOf(MemoryError);
    expect(hole.code).toBe("EFAULT");
    expect(new OutOfMemoryError(1, 1, Infinity, 0, 0).code).toBe("ENOMEM");
  });

  it("a subclass check matches only its own class", () => {
    const bad = new AddressError("phys", 1.5, "an integer");
    expect(bad).not.toBeInstanceOf(UnmappedAddressError);
    expect(bad).not.toBeInstanceOf(PageStateError);
    expect(new PageStateError(1, "double free")).not.toBeInstanceOf(AddressError);
    expect(new Error("x")).not.toBeInstanceOf(MemoryError);
    expect(new DmasimError("EIO", "x")).not.toBeInstanceOf(MemoryError);
  });
});
