import { Trace } from "@dmasim/trace";
import { describe, expect, it } from "vitest";
import { IommuError } from "./errors.js";
import { Iommu } from "./iommu.js";
import { iova, unsafeIova, SZ_1G, SZ_2M, SZ_4K } from "./iova.js";
import type { Iova } from "./iova.js";
import { protToString, IommuProt } from "./prot.js";
import { DEV_BDF } from "./test-fixtures.js";
import { physAddr, unsafePhysAddr } from "@dmasim/memory";

describe("Iommu construction", () => {
  it("has the documented defaults", () => {
    const mmu = new Iommu(new Trace());
    expect(mmu.name).toBe("iommu");
    expect(mmu.pgsizeBitmap).toBe(SZ_4K | SZ_2M | SZ_1G);
    expect(mmu.granule).toBe(SZ_4K);
    expect(mmu.requiresSyncMap).toBe(false);
    expect(mmu.vaBits).toBe(48);
    expect(mmu.iotlb).toEqual({ capacity: 2048, ways: 4, sets: 512, size: 0 });
  });

  it("takes its granule from the smallest page size", () => {
    const mmu = new Iommu(new Trace(), { pgsizeBitmap: SZ_2M | SZ_1G });
    expect(mmu.granule).toBe(SZ_2M);
    const dom = mmu.allocDomain("paging");
    expect(() => dom.map(unsafeIova(0), unsafePhysAddr(0), SZ_4K, IommuProt.READ)).toThrow(/granule \(0x200000\)/);
  });

  it.each([
    [{ vaBits: 64 }, /options.vaBits = 0x40/],
    [{ pgsizeBitmap: 0 }, /options.pgsizeBitmap = 0/],
    [{ pgsizeBitmap: SZ_4K | 8192 }, /pgsizeBitmap/],
    [{ vaBits: 30, pgsizeBitmap: SZ_1G }, /SZ_4K \| SZ_2M"?$/],
    [{ iotlbEntries: 0 }, /iotlbEntries = 0/],
    [{ iotlbEntries: 100, iotlbWays: 3 }, /iotlbWays = 0x3 .*dividing iotlbEntries \(100\)/],
    [{ faultLogEntries: -1 }, /faultLogEntries/],
  ])("rejects bad options %o", (options, msg) => {
    expect(() => new Iommu(new Trace(), options)).toThrow(msg);
  });
});

describe("IOVA widths", () => {
  it("vaBits 52 uses five levels and maps near the top of the space", () => {
    const mmu = new Iommu(new Trace(), { vaBits: 52 });
    const dom = mmu.allocDomain("paging");
    const top = 2 ** 52 - SZ_2M;
    expect(dom.map(iova(top), physAddr(SZ_2M), SZ_2M, IommuProt.READ)).toEqual({ mapped: SZ_2M, ptesWritten: 1, ptPagesAllocated: 3 });
    expect(dom.iovaToPhys(iova(top + 5))).toBe(SZ_2M + 5);
    mmu.attachDevice(DEV_BDF, dom);
    expect(mmu.translate(DEV_BDF, iova(top + 0x1000), 8, "read")).toBe(SZ_2M + 0x1000);
  });

  it("vaBits 39 uses three levels: the root holds 1 GiB leaves", () => {
    const mmu = new Iommu(new Trace(), { vaBits: 39 });
    const dom = mmu.allocDomain("paging");
    expect(dom.map(iova(SZ_1G), physAddr(2 * SZ_1G), SZ_1G, IommuProt.READ)).toEqual({ mapped: SZ_1G, ptesWritten: 1, ptPagesAllocated: 0 });
    expect(dom.ptPages).toBe(1);
    expect(() => dom.map(unsafeIova(2 ** 39), unsafePhysAddr(0), SZ_4K, IommuProt.READ)).toThrow(/39-bit IOVA space/);
  });
});

describe("domains and devices", () => {
  it("allocates domains with increasing ids and attaches devices", () => {
    const mmu = new Iommu(new Trace());
    const a = mmu.allocDomain("paging");
    const b = mmu.allocDomain("identity");
    expect([a.id, b.id]).toEqual([1, 2]);
    expect(a.iommu).toBe(mmu);
    mmu.attachDevice(DEV_BDF, a);
    expect(mmu.domainOf(DEV_BDF)).toBe(a);
    mmu.attachDevice(DEV_BDF, b);
    expect(mmu.domainOf(DEV_BDF)).toBe(b);
    expect(mmu.domains()).toEqual([a, b]);
  });

  it("refuses a domain of another unit, a bad type and an empty device name", () => {
    const mmu = new Iommu(new Trace());
    const foreign = new Iommu(new Trace(), { name: "iommu1" }).allocDomain("paging");
    expect(() => {
      mmu.attachDevice(DEV_BDF, foreign);
    }).toThrow(/not a live domain of iommu/);
    expect(() => mmu.allocDomain("dma" as never)).toThrow(/type = "dma"/);
    expect(() => {
      mmu.attachDevice("", mmu.allocDomain("paging"));
    }).toThrow(/non-empty/);
    expect(mmu.domainOf(DEV_BDF)).toBeUndefined();
  });

  it("frees a domain only when no device uses it, dropping its IOTLB entries", () => {
    const mmu = new Iommu(new Trace());
    const d = mmu.allocDomain("paging");
    d.map(iova(0), physAddr(0), SZ_4K, IommuProt.READ);
    mmu.attachDevice(DEV_BDF, d);
    mmu.translate(DEV_BDF, iova(0), 4, "read");
    let err: unknown;
    try {
      mmu.freeDomain(d);
    } catch (e) {
      err = e;
    }
    expect((err as IommuError).code).toBe("EBUSY");
    mmu.detachDevice(DEV_BDF);
    mmu.freeDomain(d);
    expect(mmu.iotlb.size).toBe(0);
    expect(mmu.domains()).toEqual([]);
    expect(() => {
      mmu.attachDevice(DEV_BDF, d);
    }).toThrow(IommuError);
  });
});

describe("iova() and protToString()", () => {
  it("iova() brands valid addresses and rejects others", () => {
    expect(iova(0x1000)).toBe(0x1000);
    expect(() => iova(-1)).toThrow(/iova = -1/);
    expect(() => iova(2 ** 53)).toThrow(IommuError);
  });

  it("unsafeIova() casts without checking; a plain number is not an Iova to the type checker", () => {
    expect(unsafeIova(0x2000)).toBe(0x2000);
    expect(unsafeIova(-1)).toBe(-1); // no check, so no throw: only for values already known good
    // @ts-expect-error a plain number must go through iova() or unsafeIova() to become an Iova
    const v: Iova = 0x3000;
    expect(v).toBe(0x3000);
  });

  it("protToString names the bits", () => {
    expect(protToString(IommuProt.READ | IommuProt.WRITE | IommuProt.MMIO)).toBe("READ|WRITE|MMIO");
    expect(protToString(0)).toBe("NONE");
  });
});
