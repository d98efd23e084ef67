import { describe, expect, it } from "vitest";
import { DmasimInputError, DmasimStateError } from "@dmasim/trace";
import { PciError, PciInputError, PcieAccessError, PlatformSpecError } from "./errors.js";

describe("PCI errors on the dmasim base", () => {
  it("bad input is a DmasimInputError; PciInputError is still caught as a PciError", () => {
    const e = new PciInputError("dmaRead(0000:01:00.0)", "len", -1, "a safe integer >= 0");
    expect(e).toBeInstanceOf(DmasimInputError);
    expect(e).toBeInstanceOf(PciError);
    expect(e.message).toBe("dmaRead(0000:01:00.0): len = -1 is invalid: expected a safe integer >= 0");
    const spec = new PlatformSpecError("memory.ramBytes", 1000, "a multiple of 4096");
    expect(spec).toBeInstanceOf(DmasimInputError);
    expect([spec.code, spec.argument, spec.path, spec.value]).toEqual(["EINVAL", "spec.memory.ramBytes", "memory.ramBytes", 1000]);
  });

  it("state errors carry their errno and are not input errors", () => {
    const nodev = new PciError("ENODEV", "x");
    expect(nodev).toBeInstanceOf(DmasimStateError);
    expect(nodev).not.toBeInstanceOf(PciInputError);
    expect(nodev.message).toBe("ENODEV: x");
    const ur = new PcieAccessError("unsupported-request", "0000:01:00.0", "read", 0x1000, 0, "nothing claims it");
    expect(ur).toBeInstanceOf(DmasimStateError);
    expect(ur.code).toBe("EIO");
    expect(ur).not.toBeInstanceOf(PciError);
  });
});
