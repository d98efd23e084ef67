import { describe, expect, it } from "vitest";
import { z } from "zod";
import { DmaConfigError, DmaOptionsError } from "./errors.js";
import { dmaDeviceOptionsSchema, dmaKernelOptionsSchema, parseDeviceOptions, parseKernelOptions } from "./options.js";

describe("kernel and device option schemas", () => {
  it("convert to JSON Schemas that refuse unknown keys (for scenario files and editors)", () => {
    const kernel = z.toJSONSchema(dmaKernelOptionsSchema, { unrepresentable: "any" }) as { additionalProperties?: unknown; properties?: Record<string, unknown> };
    expect(kernel.additionalProperties).toBe(false);
    expect(Object.keys(kernel.properties ?? {})).toEqual(["iommuMode", "swiotlb", "cpus", "debug", "costProfile", "costOverrides", "devices", "kmallocBounce", "archDmaMinalign", "cacheLines", "faultInject"]);
    const device = z.toJSONSchema(dmaDeviceOptionsSchema, { unrepresentable: "any" }) as { additionalProperties?: unknown };
    expect(device.additionalProperties).toBe(false);
  });

  it("parse good options unchanged and refuse bad ones with every issue", () => {
    const good = { iommuMode: "lazy", swiotlb: { bytes: 1 << 20 }, devices: { "0000:01:00.0": { coherent: false } } } as const;
    expect(parseKernelOptions(good, ["0000:01:00.0"])).toEqual(good);
    expect(() => parseKernelOptions({ iommuMode: "fast", debug: 1 }, [])).toThrow(DmaOptionsError);
    try {
      parseDeviceOptions("0000:01:00.0", { dmaMaskBits: 65, minAlignMask: 0x1000, busOfset: 0 });
    } catch (e) {
      expect(e).toBeInstanceOf(DmaConfigError);
      expect((e as DmaOptionsError).issues.map((i) => i.path)).toEqual(["dmaMaskBits", "minAlignMask", "busOfset"]);
      expect((e as DmaOptionsError).argument).toBe('devices["0000:01:00.0"].dmaMaskBits');
      return;
    }
    expect.unreachable("parseDeviceOptions accepted bad options");
  });
});
