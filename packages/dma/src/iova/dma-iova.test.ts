import { IommuIotlbGather } from "@dmasim/iommu/internal";
import { Trace } from "@dmasim/trace";
import { describe, expect, it } from "vitest";
import { iommuDmaAllocIova, iommuDmaFreeIova, type IommuDmaCookie } from "./dma-iova.js";
import { IovaDomain } from "./domain.js";
import { IovaError } from "./errors.js";
import { FlushQueue } from "./flush-queue.js";

const G = 4096;
const APERTURE_END = 2 ** 48 - 1;
const MASK64 = 2 ** 64 - 1;

function cookie(lazy = false): IommuDmaCookie {
  const trace = new Trace();
  const iovad = new IovaDomain(trace, { granule: G, startPfn: 1 });
  const fq = lazy
    ? new FlushQueue(trace, iovad, { flushIotlbAll: () => undefined, releasePtPages: () => undefined })
    : undefined;
  return { iovad, fq, iotlbGather: new IommuIotlbGather() };
}

describe("iommuDmaAllocIova / iommuDmaFreeIova", () => {
  it("gives a PCI device addresses below 4 GiB first, and the top of the space once that fails", () => {
    const c = cookie();
    const dev = { pci32bitWorkaround: true };
    const a = iommuDmaAllocIova(c, dev, 8192, MASK64, APERTURE_END, 0);
    expect(a).toBe(2 ** 32 - 8192);
    c.iovad.reserveIova(1, 2 ** 20 - 1); // everything below 4 GiB is now taken
    const b = iommuDmaAllocIova(c, dev, 4096, MASK64, APERTURE_END, 0);
    expect(dev.pci32bitWorkaround).toBe(false);
    expect(b).toBe(2 ** 48 - 4096);
    // The flag stays cleared even after space below 4 GiB returns.
    c.iovad.freeIova(1);
    expect(iommuDmaAllocIova(c, dev, 4096, MASK64, APERTURE_END, 0)).toBe(2 ** 48 - 8192);
  });

  it("a non-PCI device goes straight to its limit; a 32-bit mask stays below 4 GiB", () => {
    const c = cookie();
    expect(iommuDmaAllocIova(c, { pci32bitWorkaround: false }, 4096, MASK64, APERTURE_END, 0)).toBe(2 ** 48 - 4096);
    expect(iommuDmaAllocIova(c, { pci32bitWorkaround: false }, 4096, 2 ** 32 - 1, APERTURE_END, 0)).toBe(2 ** 32 - 4096);
    expect(iommuDmaAllocIova(c, { pci32bitWorkaround: false }, 4096, MASK64, 2 ** 30 - 1, 0)).toBe(2 ** 30 - 4096);
  });

  it("aligns the size to the granule (and to a power of two through alloc_iova_fast)", () => {
    const c = cookie();
    const a = iommuDmaAllocIova(c, { pci32bitWorkaround: false }, 5000, 2 ** 32 - 1, APERTURE_END, 0);
    expect(c.iovad.findIova(a / G)).toEqual({ pfnLo: a / G, pfnHi: a / G + 1 });
  });

  it("returns 0 when the space is exhausted", () => {
    const c = cookie();
    expect(iommuDmaAllocIova(c, { pci32bitWorkaround: true }, 4096, 4095, APERTURE_END, 0)).toBe(0);
  });

  it("frees straight to the cache in strict mode and through the flush queue when the unmap was queued", () => {
    const c = cookie(true);
    const dev = { pci32bitWorkaround: false };
    const a = iommuDmaAllocIova(c, dev, 4096, MASK64, APERTURE_END, 0);
    iommuDmaFreeIova(c, a, 4096, 0);
    expect(c.iovad.cachedPfns(0)).toBe(1);
    const b = iommuDmaAllocIova(c, dev, 4096, MASK64, APERTURE_END, 0);
    expect(b).toBe(a);
    iommuDmaFreeIova(c, b, 4096, 0, { queued: true, freelist: undefined });
    expect(c.fq?.pending(0)).toBe(1);
    expect(c.iovad.cachedPfns(0)).toBe(0);
  });

  it("rejects bad input without changing state", () => {
    const strict = cookie(false);
    const dev = { pci32bitWorkaround: true };
    expect(() => iommuDmaAllocIova(strict, dev, 0, MASK64, APERTURE_END, 0)).toThrow(/size = 0/);
    expect(() => iommuDmaAllocIova(strict, dev, 4096, -1, APERTURE_END, 0)).toThrow(/dmaLimit = -1/);
    expect(() => iommuDmaAllocIova(strict, dev, 4096, MASK64, APERTURE_END, 3)).toThrow(IovaError);
    expect(() => { iommuDmaFreeIova(strict, 4097, 4096, 0); }).toThrow(/granule/);
    expect(() => { iommuDmaFreeIova(strict, 4096, 4096, 0, { queued: true, freelist: undefined }); }).toThrow(/strict/);
    expect(dev.pci32bitWorkaround).toBe(true);
    expect(strict.iovad.liveRanges).toBe(0);
  });
});
