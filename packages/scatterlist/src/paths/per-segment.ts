import { DMA_ATTR_MMIO, DMA_ATTR_SKIP_CPU_SYNC, DMA_MAPPING_ERROR, Errno, dmaToPhys, type DmaAddr } from "@dmasim/dma";
import { dmaMapPhysUntracked, dmaUnmapPhysUntracked, iommuIovaToPhys, isSwiotlbBuffer } from "@dmasim/dma/internal";
import type { DmaDevice, DmaDirection } from "@dmasim/dma";
import { EntryKind } from "../classify.js";
import type { Classified } from "../classify.js";
import { SgDmaFlag } from "../constants.js";
import type { SgTable } from "../sg-table.js";
import type { PhysAddr } from "@dmasim/memory";
import { unsafePhysAddr } from "@dmasim/memory";
import { unsafeIova } from "@dmasim/iommu";

/**
 * The per-segment paths: dma_direct_map_sg (kernel/dma/direct.c) and iommu_dma_map_sg_swiotlb
 * (drivers/iommu/dma-iommu.c), which map every entry through the single-mapping path, so one DMA segment
 * per entry. BUS_ADDR entries carry their bus address and map nothing; THRU_HOST_BRIDGE entries are mapped
 * with DMA_ATTR_MMIO. A failure unmaps what was mapped (without CPU syncs) and returns -EIO.
 */
export function mapSgPerSegment(dev: DmaDevice, table: SgTable, nents: number, cls: Classified, dir: DmaDirection, attrs: number, swiotlbList: boolean): number {
  const kinds = cls.kinds;
  const viaIommu = dev.ops === "iommu";
  // The kernel's map_sg paths call the single-mapping internals (iommu_dma_map_phys,
  // dma_direct_map_phys), which dma-debug never sees: it tracks the list as a whole.
  for (let i = 0; i < nents; i++) {
    const phys = table.phys[i] ?? 0;
    const len = table.length[i] ?? 0;
    const kind = kinds[i];
    if (kind === EntryKind.BUS_ADDR) {
      table.dmaAddress[i] = cls.busAddr[i] ?? 0;
      table.dmaLength[i] = len;
      table.flags[i] = SgDmaFlag.BUS_ADDRESS;
      continue;
    }
    const mmio = kind === EntryKind.HOST_BRIDGE ? DMA_ATTR_MMIO : 0;
    const addr = dmaMapPhysUntracked(dev, phys as PhysAddr, len, dir, attrs | mmio);
    if (addr === DMA_MAPPING_ERROR) {
      unmapSgPerSegment(dev, table, i, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
      return -Errno.EIO;
    }
    table.dmaAddress[i] = addr;
    table.dmaLength[i] = len;
    let flags = mmio === 0 ? 0 : SgDmaFlag.MMIO;
    const target = mmio !== 0 ? -1 : viaIommu ? (iommuIovaToPhys(dev, unsafeIova(addr)) ?? -1) : dmaToPhys(dev, addr);
    if (target >= 0 && isSwiotlbBuffer(dev, unsafePhysAddr(target))) flags |= SgDmaFlag.BOUNCED;
    table.flags[i] = flags;
  }
  if (swiotlbList) table.flags[0] = (table.flags[0] ?? 0) | SgDmaFlag.SWIOTLB;
  return nents;
}

/** dma_direct_unmap_sg / iommu_dma_unmap_sg_swiotlb: every entry on its own; bus addresses need nothing. */
export function unmapSgPerSegment(dev: DmaDevice, table: SgTable, nents: number, dir: DmaDirection, attrs: number): void {
  for (let i = 0; i < nents; i++) {
    const flags = table.flags[i] ?? 0;
    if ((flags & SgDmaFlag.BUS_ADDRESS) !== 0) continue;
    const mmio = (flags & SgDmaFlag.MMIO) !== 0 ? DMA_ATTR_MMIO : 0;
    dmaUnmapPhysUntracked(dev, (table.dmaAddress[i] ?? 0) as DmaAddr, table.dmaLength[i] ?? 0, dir, attrs | mmio);
  }
}
