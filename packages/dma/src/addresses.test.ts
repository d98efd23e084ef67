import { describe, expect, it } from "vitest";
import { GiB, type PhysAddr, physAddr } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import { DmasimInputError } from "@dmasim/trace";
import { PciInputError } from "@dmasim/pcie-p2p";
import { createDmaKernel, dmaAddr, DmaDirection, dmaMapPhys, dmaMappingError, dmaToPhys, dmaUnmapPhys, physToDma, unsafeDmaAddr } from "./index.js";
import type { DmaAddr } from "./index.js";
import { TRUSTED_BDF } from "./test-fixtures.js";
import { iova } from "@dmasim/iommu";

describe("DmaAddr brand", () => {
  it("dmaAddr (declared by pcie-p2p) brands safe integers >= 0 and rejects the rest with PciInputError naming the value", () => {
    expect(dmaAddr(0)).toBe(0);
    expect(dmaAddr(Number.MAX_SAFE_INTEGER)).toBe(Number.MAX_SAFE_INTEGER);
    for (const bad of [-1, 0.5, Number.NaN, -Infinity, 2 ** 53]) {
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

  it("unsafeDmaAddr casts without checking; a plain number is not a DmaAddr to the type checker", () => {
    expect(unsafeDmaAddr(0x1000)).toBe(0x1000);
    expect(unsafeDmaAddr(-1)).toBe(-1); // no check, so no throw: only for values already known good
    // @ts-expect-error a plain number must go through dmaAddr() or unsafeDmaAddr() to become a DmaAddr
    const a: DmaAddr = 0x1000;
    expect(a).toBe(0x1000);
  });

  it("results carry the brands and go where the layer below takes an address; plain numbers still work", () => {
    const platform = createPlatform({ memory: { ramBytes: 4 * GiB }, iommu: {}, endpoints: [{ bdf: TRUSTED_BDF }] });
    const dev = createDmaKernel(platform, { iommuMode: "strict" }).device(TRUSTED_BDF);
    const phys: PhysAddr = platform.memory.allocator.allocPages(1);
    const bytes = new Uint8Array(64).map((_, i) => i + 1);
    platform.memory.write(phys, bytes);
    const addr: DmaAddr = dmaMapPhys(dev, phys, 64, DmaDirection.TO_DEVICE);
    expect(dmaMappingError(dev, addr)).toBe(0);
    // The brand is a type only: the device reads the mapped bytes at the returned address.
    expect(platform.endpoint(TRUSTED_BDF).dmaRead(addr, 64)).toEqual(bytes);
    const back: PhysAddr | undefined = platform.iommuFor(TRUSTED_BDF)?.domainOf(TRUSTED_BDF)?.iovaToPhys(iova(addr));
    expect(back).toBe(phys);
    dmaUnmapPhys(dev, dmaAddr(Number(addr)), 64, DmaDirection.TO_DEVICE); // a plain number is accepted (widening)
    const direct = createDmaKernel(createPlatform({ memory: { ramBytes: 1 * GiB }, endpoints: [{ bdf: TRUSTED_BDF }] })).device(TRUSTED_BDF);
    const bus: DmaAddr = physToDma(direct, physAddr(0x4000));
    const cpu: PhysAddr = dmaToPhys(direct, bus);
    expect(cpu).toBe(0x4000);
  });
});
