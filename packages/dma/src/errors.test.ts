import { describe, expect, it } from "vitest";
import { DmasimInputError, DmasimStateError } from "@dmasim/trace";
import { CpuCacheError, CpuCacheInputError } from "./cache/errors.js";
import { DmaDebugError } from "./debug/errors.js";
import { DmaConfigError, DmaInputError } from "./errors.js";
import { IovaError } from "./iova/errors.js";
import { SwiotlbError } from "./swiotlb/errors.js";

describe("DMA errors on the dmasim base", () => {
  it("bad-input classes are DmasimInputErrors with code EINVAL", () => {
    for (const e of [new DmaInputError("dmaMapPhys", "size", -1, "bytes > 0"), new IovaError("cpu", 9, "a CPU"), new CpuCacheInputError("cpuRead", "phys", -1, "an address")]) {
      expect(e).toBeInstanceOf(DmasimInputError);
      expect(e.code).toBe("EINVAL");
    }
    expect(new DmaInputError("dmaMapPhys", "size", -1, "bytes > 0").message).toBe("dmaMapPhys: size = -1 is invalid: expected bytes > 0");
  });

  it("state classes are DmasimStateErrors with their errno or documented code", () => {
    const sw = new SwiotlbError("EBUSY", "pool has mappings", { cause: 1 });
    expect(sw).toBeInstanceOf(DmasimStateError);
    expect([sw.code, sw.cause]).toEqual(["EBUSY", 1]);
    const dbg = new DmaDebugError({ check: "leak", device: "0000:01:00.0", message: "1 mapping left", t: 0 });
    expect(dbg).toBeInstanceOf(DmasimStateError);
    expect(dbg.code).toBe("EDMADEBUG");
    expect(new DmaConfigError("x").code).toBe("EINVAL");
  });

  it("CpuCacheError catches the cache's input errors too, and only them", () => {
    expect(new CpuCacheInputError("cpuRead", "phys", -1, "an address")).toBeInstanceOf(CpuCacheError);
    expect(new DmaInputError("f", "a", 1, "b")).not.toBeInstanceOf(CpuCacheError);
    expect(new CpuCacheError("EFAULT", "x")).not.toBeInstanceOf(CpuCacheInputError);
  });
});
