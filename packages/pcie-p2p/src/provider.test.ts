import { KiB, MiB, PageFlag, pfnOf, unsafePhysAddr } from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import { PciError } from "./errors.js";
import { createPlatform } from "./platform.js";
import { A, B, switchSpec } from "./test-fixtures.js";

describe("addP2pdmaProvider / pci_p2pdma_add_resource", () => {
  it("registers the whole BAR as ZONE_DEVICE P2PDMA pages owned by the provider id", () => {
    const p = createPlatform(switchSpec());
    const bar = p.endpoint(B).bars[0]!;
    const prov = p.addP2pdmaProvider(B, 0);
    expect(prov).toEqual({ id: 1, owner: B, busOffset: 0, phys: bar.phys, bus: bar.bus, size: 2 * MiB, bar: 0 });
    for (const pfn of [pfnOf(bar.phys), pfnOf(unsafePhysAddr(bar.phys + bar.size - 1))]) {
      expect(p.memory.pages.hasPage(pfn)).toBe(true);
      expect(p.memory.pages.flags(pfn) & (PageFlag.ZONE_DEVICE | PageFlag.P2PDMA)).toBe(PageFlag.ZONE_DEVICE | PageFlag.P2PDMA);
      expect(p.memory.pages.owner(pfn)).toBe(1);
    }
    expect(p.providerById(1)).toBe(prov);
    expect(p.providers).toEqual([prov]);
  });

  it("takes an offset and a size inside the BAR; ids count up from 1", () => {
    const p = createPlatform(switchSpec({ hostBridges: [{ id: "hb0", busOffset: 1 * MiB }] }));
    const bar = p.endpoint(B).bars[0]!;
    const first = p.addP2pdmaProvider(B, 0, { offset: 64 * KiB, size: 64 * KiB });
    const second = p.addP2pdmaProvider(B, 0, { offset: 128 * KiB });
    expect(first).toMatchObject({ id: 1, phys: bar.phys + 64 * KiB, size: 64 * KiB, busOffset: MiB, bus: bar.phys + 64 * KiB + MiB });
    expect(second).toMatchObject({ id: 2, phys: bar.phys + 128 * KiB, size: 2 * MiB - 128 * KiB });
    expect(p.memory.pages.hasPage(pfnOf(bar.phys))).toBe(false);
    expect(p.memory.pages.owner(pfnOf(second.phys))).toBe(2);
  });

  it.each<[string, () => unknown, RegExp]>([
    ["unknown device", () => createPlatform(switchSpec()).addP2pdmaProvider("0000:0f:00.0", 0), /ENODEV/],
    ["no such BAR", () => createPlatform(switchSpec()).addP2pdmaProvider(A, 2), /addP2pdmaProvider: bar = 0x2 is invalid: expected a memory BAR of 0000:02:00.0 \(0\)/],
    ["offset past the BAR", () => createPlatform(switchSpec()).addP2pdmaProvider(A, 0, { offset: MiB }), /offset = 0x100000/],
    ["offset not a page", () => createPlatform(switchSpec()).addP2pdmaProvider(A, 0, { offset: 100 }), /offset = 0x64/],
    ["size past the end", () => createPlatform(switchSpec()).addP2pdmaProvider(A, 0, { offset: 4096, size: MiB }), /size = 0x100000 .*at most 1044480/],
    ["size not pages", () => createPlatform(switchSpec()).addP2pdmaProvider(A, 0, { size: 10 }), /size = 0xa/],
  ])("refuses %s with a PciError", (_name, call, msg) => {
    expect(call).toThrow(PciError);
    expect(call).toThrow(msg);
  });

  it("refuses an overlapping range (EEXIST) and leaves pages and providers as they were", () => {
    const p = createPlatform(switchSpec());
    const bar = p.endpoint(B).bars[0]!;
    p.addP2pdmaProvider(B, 0, { size: 64 * KiB });
    let err: unknown;
    try {
      p.addP2pdmaProvider(B, 0, { offset: 0, size: 128 * KiB });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PciError);
    expect((err as PciError).code).toBe("EEXIST");
    expect(p.providers).toHaveLength(1);
    expect(p.memory.pages.hasPage(pfnOf(unsafePhysAddr(bar.phys + 64 * KiB)))).toBe(false);
    expect(p.addP2pdmaProvider(B, 0, { offset: 64 * KiB, size: 64 * KiB }).id).toBe(2);
  });
});
