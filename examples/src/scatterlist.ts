// @dmasim/scatterlist: struct scatterlist and dma_map_sgtable. A driver describes a buffer of scattered
// pages as a list; behind an IOMMU the mapping merges it into as few DMA segments as it can (here one),
// which is what the device's descriptors are programmed from. dma_map_sg here is rebuilt on the
// two-step API; { impl: "classic" } runs upstream's iommu_dma_map_sg instead.
import { DmaDirection, createDmaKernel, unsafeDmaAddr } from "@dmasim/dma";
import { GiB, PAGE_SIZE, physAddr } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import { dmaMapSgtable, dmaUnmapSgtable, forEachSgtableDmaSg, sgAllocTableFromPages, sgFreeTable } from "@dmasim/scatterlist";

const platform = createPlatform({ memory: { ramBytes: 4 * GiB }, iommu: {}, endpoints: [{ bdf: "0000:01:00.0" }] });
const kernel = createDmaKernel(platform, { iommuMode: "strict" });
const dev = kernel.device("0000:01:00.0");
const alloc = platform.memory.allocator;

// Four pages: an adjacent pair, then two more with gaps between them.
const a = alloc.allocPages(2) / PAGE_SIZE;
alloc.allocPages(1);
const b = alloc.allocPages(3) / PAGE_SIZE;
const pfns = [a, a + 1, b, b + 2];
pfns.forEach((pfn, i) => {
  platform.memory.write(physAddr(pfn * PAGE_SIZE), new TextEncoder().encode(`page ${i}`));
});

const sgt = sgAllocTableFromPages(platform.trace, pfns, pfns.length, 0, pfns.length * PAGE_SIZE);
console.log(`sg_alloc_table_from_pages: ${pfns.length} pages -> ${sgt.origNents} entries (the adjacent pair is one)`);

const ret = dmaMapSgtable(dev, sgt, DmaDirection.TO_DEVICE);
console.log(`dma_map_sgtable: ${ret}, ${sgt.nents} DMA segment(s)`);
forEachSgtableDmaSg(sgt, (i, addr, len) => {
  const device = platform.endpoint("0000:01:00.0");
  const words = [0, 1, 2, 3].map((p) => new TextDecoder().decode(device.dmaRead(unsafeDmaAddr(addr + p * PAGE_SIZE), 6)));
  console.log(`  segment ${i}: ${len} bytes; the device reads ${JSON.stringify(words)}`);
  return true;
});
dmaUnmapSgtable(dev, sgt, DmaDirection.TO_DEVICE);
sgFreeTable(sgt);
const c = kernel.costs().counters;
console.log(`DmaIovaTryAllocs ${c.DmaIovaTryAllocs}, DmaIovaLinks ${c.DmaIovaLinks}, IotlbSyncMap ${c.IotlbSyncMap}, DmaIovaDestroys ${c.DmaIovaDestroys}`);
// Output:
// sg_alloc_table_from_pages: 4 pages -> 3 entries (the adjacent pair is one)
// dma_map_sgtable: 0, 1 DMA segment(s)
//   segment 0: 16384 bytes; the device reads ["page 0","page 1","page 2","page 3"]
// DmaIovaTryAllocs 1, DmaIovaLinks 3, IotlbSyncMap 1, DmaIovaDestroys 1
