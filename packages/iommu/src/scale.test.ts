import { Counter } from "./counters.js";
import { describe, expect, it } from "vitest";
import { domainPageTable } from "./internal.js";
import { SZ_1G, SZ_2M, SZ_4K, iova } from "./iova.js";
import { IommuProt } from "./prot.js";
import { setup } from "./test-fixtures.js";
import { physAddr } from "@dmasim/memory";

const RW = IommuProt.READ | IommuProt.WRITE;
const PAGES = 1_048_576; // 4 GiB of 4 KiB pages

describe("4 GiB in one domain", () => {
  it("4 KiB leaves: a million PTEs in about 8 bytes of page table per page", () => {
    const { dom, mmu, dev, trace } = setup({ pgsizeBitmap: SZ_4K });
    const r = dom.map(iova(SZ_1G), physAddr(8 * SZ_1G), PAGES * SZ_4K, RW);
    expect(r.ptesWritten).toBe(PAGES);
    // 2048 L1 tables + 4 L2 tables + 1 L3 table + the root.
    expect(r.ptPagesAllocated).toBe(2048 + 4 + 1);
    expect(dom.ptPages).toBe(2048 + 4 + 1 + 1);
    expect(dom.ptBytes / PAGES).toBeLessThanOrEqual(10);
    // Host memory: the 4 KiB per table, at most one partly used 256 KiB chunk, 2 bytes of use count
    // per table (held in an array that doubles): not the up to twice as much of a slab that doubles.
    const host = dom[domainPageTable]?.hostBytes ?? Infinity;
    expect(host).toBeGreaterThanOrEqual(dom.ptBytes);
    expect(host).toBeLessThanOrEqual(dom.ptBytes + 256 * 1024 + 4 * dom.ptPages);
    expect(host / PAGES).toBeLessThanOrEqual(10);
    expect(trace.counters.get(Counter.PteWrites)).toBe(PAGES);
    expect(mmu.translate(dev, iova(SZ_1G + 12345 * SZ_4K + 7), 1, "read")).toBe(8 * SZ_1G + 12345 * SZ_4K + 7);
  });

  it("2 MiB-aligned but unable to use 1 GiB leaves: 2048 leaves of 2 MiB", () => {
    const { dom } = setup({ pgsizeBitmap: SZ_4K | SZ_2M });
    const r = dom.map(iova(SZ_1G), physAddr(8 * SZ_1G + SZ_2M), PAGES * SZ_4K, RW);
    expect(r.ptesWritten).toBe(2048);
    expect(r.ptPagesAllocated).toBe(4 + 1);
    expect(dom.iovaToPhys(iova(SZ_1G + 3 * SZ_2M + 5))).toBe(8 * SZ_1G + 4 * SZ_2M + 5);
  });

  it("the same range with phys off by one page falls back to 4 KiB leaves", () => {
    const { dom } = setup();
    expect(dom.map(iova(SZ_1G), physAddr(8 * SZ_1G + SZ_4K), PAGES * SZ_4K, RW).ptesWritten).toBe(PAGES);
  });
});
