import { Trace } from "@dmasim/trace";
import { bench, describe } from "vitest";
import { Iommu } from "./iommu.js";
import { SZ_1G, SZ_2M, SZ_4K, type Iova } from "./iova.js";
import { IommuProt } from "./prot.js";
import { DEV_BDF } from "./test-fixtures.js";
import type { PhysAddr } from "@dmasim/memory";

const RW = IommuProt.READ | IommuProt.WRITE;
const PAGES = 1_048_576;

describe("map 4 GiB (1,048,576 pages) into one domain", () => {
  bench(
    "4 KiB leaves (pgsizeBitmap = SZ_4K): divide by 1,048,576 for ns/page",
    () => {
      const dom = new Iommu(new Trace(), { pgsizeBitmap: SZ_4K }).allocDomain("paging");
      dom.map(0 as Iova, SZ_1G as PhysAddr, PAGES * SZ_4K, RW);
    },
    { iterations: 10, warmupIterations: 2 },
  );
  bench(
    "2 MiB leaves (2 MiB-aligned, pgsizeBitmap = SZ_4K | SZ_2M)",
    () => {
      const dom = new Iommu(new Trace(), { pgsizeBitmap: SZ_4K | SZ_2M }).allocDomain("paging");
      dom.map(0 as Iova, SZ_1G as PhysAddr, PAGES * SZ_4K, RW);
    },
    { iterations: 50 },
  );
});

describe("map + unmap one 4 KiB page (iommu_map / iommu_unmap)", () => {
  const dom = new Iommu(new Trace()).allocDomain("paging");
  dom.map(0 as Iova, 0 as PhysAddr, SZ_4K, RW); // keeps the lower tables alive, as in a busy domain
  bench("100 × (map 4K, unmap 4K, release)", () => {
    for (let i = 0; i < 100; i++) {
      dom.map(SZ_4K as Iova, SZ_2M as PhysAddr, SZ_4K, RW);
      dom.releasePtPages(dom.unmap(SZ_4K as Iova, SZ_4K).freed);
    }
  });
});

describe("the iommu part of dma_map_phys + dma_unmap_phys of one 4 KiB page", () => {
  // What the DMA layer calls per map/unmap pair with an IOVA range-cache hit: iommu_map,
  // iotlb_sync_map, iova_to_phys, iommu_unmap, iommu_iotlb_sync over the range, and the freelist put.
  const mmu = new Iommu(new Trace());
  const dev = DEV_BDF;
  const dom = mmu.allocDomain("paging");
  mmu.attachDevice(dev, dom);
  dom.map(0 as Iova, 0 as PhysAddr, SZ_4K, RW); // keeps the lower tables alive, as in a busy domain
  for (let i = 0; i < 256; i++) dom.map(((512 + i) * SZ_4K) as Iova, (SZ_1G + i * SZ_4K) as PhysAddr, SZ_4K, RW);
  for (let i = 0; i < 256; i++) mmu.translate(dev, ((512 + i) * SZ_4K) as Iova, 64, "read"); // a warm IOTLB
  // Locals, not the imported bindings: the runner turns each use of an import into a property read,
  // which would be charged to the calls measured here.
  const page = SZ_4K;
  const phys = SZ_2M;
  const prot = RW;
  let k = 0;
  bench("100 × (map, iotlbSyncMap, iovaToPhys, unmap, invalidateRange, releasePtPages) of 4 KiB", () => {
    for (let i = 0; i < 100; i++) {
      const va = page * (1 + (k++ & 63));
      dom.map(va as Iova, phys as PhysAddr, page, prot);
      dom.iotlbSyncMap(va as Iova, page);
      if (dom.iovaToPhys(va as Iova) !== phys) throw new Error("iovaToPhys");
      const { freed } = dom.unmap(va as Iova, page);
      dom.invalidateRange(va as Iova, page);
      dom.releasePtPages(freed);
    }
  });
});

describe("the iommu part of a two-step 256-page batch (dma_iova_link × 256, dma_iova_sync, unlink)", () => {
  // 256 single-page maps into a 1 MiB IOVA range, one iotlb_sync_map over it, then one iommu_unmap of
  // the whole range, its IOTLB invalidation and the freelist put: what the DMA layer asks of this
  // package per 256-page batch. The range is 1 MiB-aligned inside a live leaf table, so (as in the
  // kernel) the unmap frees no table.
  const mmu = new Iommu(new Trace());
  const dev = DEV_BDF;
  const dom = mmu.allocDomain("paging");
  mmu.attachDevice(dev, dom);
  dom.map(0 as Iova, 0 as PhysAddr, SZ_4K, RW); // keeps the lower tables alive, as in a busy domain
  for (let i = 0; i < 256; i++) mmu.translate(dev, 0 as Iova, 64, "read");
  const page = SZ_4K;
  const base = 1024 * 1024;
  const len = 256 * page;
  const phys = SZ_1G;
  const prot = RW;
  bench("256 × map 4 KiB + iotlbSyncMap + unmap 1 MiB + invalidateRange + releasePtPages", () => {
    for (let i = 0; i < 256; i++) dom.map((base + i * page) as Iova, (phys + i * page) as PhysAddr, page, prot);
    dom.iotlbSyncMap(base as Iova, len);
    const { freed } = dom.unmap(base as Iova, len);
    dom.invalidateRange(base as Iova, len);
    dom.releasePtPages(freed);
  });
});

describe("translate", () => {
  const mmu = new Iommu(new Trace());
  const dom = mmu.allocDomain("paging");
  mmu.attachDevice(DEV_BDF, dom);
  dom.map(0 as Iova, (SZ_1G + SZ_4K) as PhysAddr, 256 * SZ_4K, RW);
  for (let i = 0; i < 256; i++) mmu.translate(DEV_BDF, (i * SZ_4K) as Iova, 64, "read");
  // 1024 accesses per sample so the harness's own per-call cost does not swamp them: divide by 1024.
  bench("1024 × IOTLB hit (256 hot pages, 4 KiB leaves)", () => {
    for (let i = 0; i < 1024; i++) mmu.translate(DEV_BDF, ((i & 255) * SZ_4K) as Iova, 64, "read");
  });
  const mmu2 = new Iommu(new Trace(), { iotlbEntries: 16 });
  const dom2 = mmu2.allocDomain("paging");
  mmu2.attachDevice(DEV_BDF, dom2);
  dom2.map(0 as Iova, (SZ_1G + SZ_4K) as PhysAddr, 4096 * SZ_4K, RW);
  let j = 0;
  bench("1024 × IOTLB miss + 4-level walk (4096 pages through 16 entries)", () => {
    for (let i = 0; i < 1024; i++) mmu2.translate(DEV_BDF, ((j++ & 4095) * SZ_4K) as Iova, 64, "read");
  });
});
