// The README's example, kept here so it cannot rot.
import { Counter, Trace } from "@dmasim/trace";
import { expect, it } from "vitest";
import { Iommu, IommuProt, SZ_4K } from "./index.js";

it("README example runs and shows the lazy-invalidation window", () => {
  const trace = new Trace();
  const iommu = new Iommu(trace, { name: "iommu0" });
  const dom = iommu.allocDomain("paging");
  iommu.attachDevice("0000:01:00.0", dom);

  // iommu_map + iotlb_sync_map: 16 KiB at IOVA 0x10000 → phys 0x8000_0000, read/write.
  dom.map(0x1_0000, 0x8000_0000, 4 * SZ_4K, IommuProt.READ | IommuProt.WRITE);
  dom.iotlbSyncMap(0x1_0000, 4 * SZ_4K);
  const first = iommu.translate("0000:01:00.0", 0x1_0040, 64, "read"); // 0x80000040 (walk, fills IOTLB)

  // iommu_unmap without an IOTLB invalidation (lazy mode before the flush queue drains)
  const { unmapped, freed } = dom.unmap(0x1_0000, 4 * SZ_4K);
  const stale = iommu.translate("0000:01:00.0", 0x1_0040, 64, "write"); // still 0x80000040: stale hit

  dom.invalidateRange(0x1_0000, 4 * SZ_4K); // iommu_iotlb_sync
  dom.releasePtPages(freed); // only now may the page-table pages be reused
  const after = iommu.translate("0000:01:00.0", 0x1_0040, 64, "read"); // -1: fault "not-mapped"

  expect([first, unmapped, stale, after]).toEqual([0x8000_0040, 4 * SZ_4K, 0x8000_0040, -1]);
  expect(trace.counters.get(Counter.IotlbStaleHits)).toBe(1);
  expect(iommu.faults()[0]).toMatchObject({ iova: 0x1_0040, access: "read", reason: "not-mapped" });
  expect(trace.counters.snapshot().nonZero()).toEqual({
    IommuMapCalls: 1,
    IommuUnmapCalls: 1,
    PteWrites: 4,
    PteClears: 7,
    PtPagesAllocated: 3,
    PtPagesFreed: 3,
    PtWalks: 2,
    PtWalkLevels: 5, // 4 for the first walk, 1 after unmap (the root entry is empty)
    IotlbHits: 1,
    IotlbMisses: 2,
    IotlbStaleHits: 1,
    IotlbInvalRange: 1,
    IotlbSyncMap: 1,
    IommuFaults: 1,
    PtPagesPendingFree: 3,
  });
});
