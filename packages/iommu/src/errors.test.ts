import { describe, expect, it } from "vitest";
import { DmasimInputError, DmasimStateError, Trace } from "@dmasim/trace";
import { Iommu } from "./iommu.js";
import { IommuError, IommuInputError } from "./errors.js";

describe("IOMMU errors on the dmasim base", () => {
  it("bad input is an IommuInputError (and still an IommuError) naming function, argument and value", () => {
    const mmu = new Iommu(new Trace());
    let e: unknown;
    try {
      mmu.allocDomain("dma" as never);
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(IommuInputError);
    expect(e).toBeInstanceOf(DmasimInputError);
    expect(e).toBeInstanceOf(IommuError);
    const input = e as IommuInputError;
    expect([input.code, input.fn, input.argument, input.value]).toEqual(["EINVAL", "allocDomain", "type", "dma"]);
  });

  it("a refusal in the model's state is an IommuError with its errno, not an input error", () => {
    const mmu = new Iommu(new Trace());
    const d = mmu.allocDomain("paging");
    mmu.attachDevice("0000:01:00.0", d);
    let e: unknown;
    try {
      mmu.freeDomain(d);
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(IommuError);
    expect(e).toBeInstanceOf(DmasimStateError);
    expect(e).not.toBeInstanceOf(IommuInputError);
    expect((e as IommuError).code).toBe("EBUSY");
    expect((e as IommuError).message).toMatch(/^EBUSY: freeDomain/);
  });
});
