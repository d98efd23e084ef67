// @dmasim/iommu: the IOMMU hardware. A domain's IO page table translates a device's IOVAs to physical
// addresses; the IOTLB caches translations, so an unmap is only complete once the IOTLB is invalidated.
// Skipping that invalidation leaves a stale entry the device can still use.
import { Counter, Iommu, IommuProt, SZ_4K, iova } from "@dmasim/iommu";
import { physAddr } from "@dmasim/memory";
import { Trace } from "@dmasim/trace";

const trace = new Trace();
const iommu = new Iommu(trace, { name: "iommu0" });
const dom = iommu.allocDomain("paging");
iommu.attachDevice("0000:01:00.0", dom);
const show = (addr: number): string => (addr < 0 ? "fault" : `0x${addr.toString(16)}`);

// iommu_map + iotlb_sync_map: 16 KiB at IOVA 0x10000 to physical 0x80000000, read/write.
dom.map(iova(0x1_0000), physAddr(0x8000_0000), 4 * SZ_4K, IommuProt.READ | IommuProt.WRITE);
dom.iotlbSyncMap(iova(0x1_0000), 4 * SZ_4K);
console.log(`mapped:                  0x10040 -> ${show(iommu.translate("0000:01:00.0", iova(0x1_0040), 64, "read"))}`);

// iommu_unmap alone clears the PTEs; the IOTLB still holds the translation (lazy mode, before the
// flush queue drains), so the device still reaches the page.
const { unmapped, freed } = dom.unmap(iova(0x1_0000), 4 * SZ_4K);
console.log(`unmapped ${unmapped} bytes:    0x10040 -> ${show(iommu.translate("0000:01:00.0", iova(0x1_0040), 64, "write"))} (a stale IOTLB hit)`);

// iommu_iotlb_sync: now the translation is gone and the access faults.
dom.invalidateRange(iova(0x1_0000), 4 * SZ_4K);
dom.releasePtPages(freed);
console.log(`after the invalidation:  0x10040 -> ${show(iommu.translate("0000:01:00.0", iova(0x1_0040), 64, "read"))}`);
console.log(`faults: ${JSON.stringify(iommu.faults())}`);
console.log(`stale IOTLB hits: ${trace.counters.get(Counter.IotlbStaleHits)}`);
// Output:
// mapped:                  0x10040 -> 0x80000040
// unmapped 16384 bytes:    0x10040 -> 0x80000040 (a stale IOTLB hit)
// after the invalidation:  0x10040 -> fault
// faults: [{"t":0,"device":"0000:01:00.0","iova":65600,"access":"read","reason":"not-mapped"}]
// stale IOTLB hits: 1
