// IO page-table page allocation failing under iommu_map (fault injection): the map unwinds what it
// wrote and reports ENOMEM, as iommu_map does when __iommu_map fails part-way.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { mapGranuleNoPhysProtCheck } from "./internal.js";
import { FAIL_IO_PGTABLE } from "./domain.js";
import { IommuError } from "./errors.js";
import { SZ_1G, SZ_2M, SZ_4K, iova } from "./iova.js";
import { IommuProt } from "./prot.js";
import { setup } from "./test-fixtures.js";
import { physAddr } from "@dmasim/memory";

const RW = IommuProt.READ | IommuProt.WRITE;

function enomem(fn: () => unknown): IommuError {
  try {
    fn();
  } catch (e) {
    if (e instanceof IommuError) return e;
    throw e;
  }
  throw new Error("expected an IommuError");
}

describe("fail_io_pgtable", () => {
  it("a map failing in its second leaf table unmaps its first part, flushes it and throws ENOMEM", () => {
    const { dom, mmu, trace, dev } = setup();
    dom.map(iova(0x1000), physAddr(0x40_0000), SZ_4K, RW); // links the tables down to the leaf table of [0, 2 MiB)
    const pages = dom.ptPages;
    const bytes = dom.mappedBytes;
    trace.faults.attr(FAIL_IO_PGTABLE).configure({ probability: 100, times: 1 });
    // [2 MiB - 4 KiB, 2 MiB + 4 KiB): the first page lands in the existing leaf table, the second needs a new one.
    const e = enomem(() => dom.map(iova(SZ_2M - SZ_4K), physAddr(0x80_0000), 2 * SZ_4K, RW));
    expect(e.code).toBe("ENOMEM");
    expect(dom.iovaToPhys(iova(SZ_2M - SZ_4K))).toBeUndefined();
    expect(dom.iovaToPhys(iova(SZ_2M))).toBeUndefined();
    expect(dom.mappedBytes).toBe(bytes);
    expect(dom.ptPages).toBe(pages);
    expect(dom.ptPagesPending).toBe(0);
    expect(mmu.translate(dev, iova(SZ_2M - SZ_4K), 4, "read")).toBe(-1);
    expect(mmu.translate(dev, iova(0x1000), 4, "read")).toBe(0x40_0000);
    expect(trace.faults.attr(FAIL_IO_PGTABLE).injected).toBe(1);
    // times is used up: the same map now succeeds.
    expect(dom.map(iova(SZ_2M - SZ_4K), physAddr(0x80_0000), 2 * SZ_4K, RW).mapped).toBe(2 * SZ_4K);
    expect(mmu.translate(dev, iova(SZ_2M), 4, "write")).toBe(0x80_1000);
  });

  it("a single-page map that needs tables fails with one draw and leaves nothing mapped", () => {
    const { dom, trace } = setup();
    dom.map(iova(0x1000), physAddr(0x40_0000), SZ_4K, RW);
    const pages = dom.ptPages;
    trace.faults.attr(FAIL_IO_PGTABLE).configure({ probability: 100, times: 1 });
    expect(enomem(() => dom.map(iova(SZ_1G), physAddr(0x80_0000), SZ_4K, RW)).code).toBe("ENOMEM");
    expect(trace.faults.attr(FAIL_IO_PGTABLE).injected).toBe(1);
    expect(dom.iovaToPhys(iova(SZ_1G))).toBeUndefined();
    expect(dom.ptPages).toBe(pages);
    // A page whose leaf table exists needs no allocation: armed or not, it maps.
    trace.faults.attr(FAIL_IO_PGTABLE).configure({ probability: 100, times: -1 });
    expect(dom.map(iova(0x2000), physAddr(0x40_1000), SZ_4K, RW).mapped).toBe(SZ_4K);
    expect(dom[mapGranuleNoPhysProtCheck](0x3000, 0x40_2000, RW)).toBe(0);
    expect(dom[mapGranuleNoPhysProtCheck](2 * SZ_1G, 0x40_2000, RW)).toBe(-1);
  });

  it("under random failures every map is all or nothing and mappedBytes stays exact", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1000 }),
        fc.array(fc.record({ slot: fc.integer({ min: 0, max: 63 }), pages: fc.integer({ min: 1, max: 700 }) }), { minLength: 1, maxLength: 12 }),
        (seed, maps) => {
          const { dom, trace } = setup();
          trace.faults.configure({ seed, sites: { [FAIL_IO_PGTABLE]: { probability: 40 } } });
          let expected = 0;
          for (const m of maps) {
            // Each map gets its own 4 MiB-aligned stretch of IOVA, 1 GiB apart so most need new tables.
            const at = m.slot * SZ_1G + SZ_2M - SZ_4K;
            const size = m.pages * SZ_4K;
            if (dom.iovaToPhys(iova(at)) !== undefined) continue;
            let ok = true;
            try {
              dom.map(iova(at), physAddr(0x100_0000), size, RW);
            } catch (e) {
              if (!(e instanceof IommuError) || e.code !== "ENOMEM") throw e;
              ok = false;
            }
            if (ok) expected += size;
            for (const off of [0, size - SZ_4K, Math.floor(m.pages / 2) * SZ_4K]) {
              expect(dom.iovaToPhys(iova(at + off))).toBe(ok ? 0x100_0000 + off : undefined);
            }
            expect(dom.mappedBytes).toBe(expected);
          }
        },
      ),
      { numRuns: 100 },
    );
  });
});
