import { DMA_ATTR_MMIO, Errno, unsafeDmaAddr } from "@dmasim/dma";
import {
  dmaInfoToProt,
  iommuDmaAllocIovaForDevice,
  iommuDmaFreeIovaForDevice,
  iommuDmaUnmap,
  iommuMap,
  iommuSyncMap,
  iommuUnmap,
} from "@dmasim/dma/internal";
import type { DmaDevice, DmaDirection } from "@dmasim/dma";
import { EntryKind } from "../classify.js";
import type { Classified } from "../classify.js";
import { SgDmaFlag } from "../constants.js";
import type { SgLayout } from "../layout.js";
import type { SgTable } from "../sg-table.js";
import { unsafeIova } from "@dmasim/iommu";
import { unsafePhysAddr } from "@dmasim/memory";

export interface ClassicResult {
  readonly ret: number;
  readonly iova: number;
}

/**
 * iommu_dma_map_sg as upstream writes it (drivers/iommu/dma-iommu.c): one IOVA for the padded layout,
 * iommu_map_sg (one iommu_map per physically contiguous run of padded entries, then one iotlb_sync_map),
 * and __finalise_sg. Boundary padding is mapped too, to the memory that follows the padded entry, as
 * iommu_map_sg does with the lengthened entry.
 */
export function mapSgClassic(dev: DmaDevice, table: SgTable, nents: number, cls: Classified, lay: SgLayout, dir: DmaDirection, attrs: number): ClassicResult {
  const kinds = cls.kinds;
  let iova = 0;
  if (lay.iovaLen > 0) {
    iova = iommuDmaAllocIovaForDevice(dev, lay.iovaLen, dev.dmaMask);
    if (iova === 0) return { ret: -Errno.ENOMEM, iova: 0 };
    const protMem = dmaInfoToProt(dir, dev.coherent, attrs);
    const protMmio = dmaInfoToProt(dir, dev.coherent, attrs | DMA_ATTR_MMIO);
    let mapped = 0;
    let runPhys = 0;
    let runLen = 0;
    let runKind = -1;
    let err = 0;
    for (let i = 0; i <= nents && err === 0; i++) {
      const end = i === nents;
      const kind = end ? -1 : (kinds[i] ?? 0);
      if (kind === EntryKind.BUS_ADDR) continue;
      const phys = end ? 0 : (table.phys[i] ?? 0) - (lay.off[i] ?? 0);
      if (runLen > 0 && (end || phys !== runPhys + runLen || kind !== runKind)) {
        err = iommuMap(dev, unsafeIova(iova + mapped), unsafePhysAddr(runPhys), runLen, runKind === EntryKind.HOST_BRIDGE ? protMmio : protMem);
        if (err === 0) mapped += runLen;
        runLen = 0;
      }
      if (end || err !== 0) continue;
      if (runLen === 0) {
        runPhys = phys;
        runKind = kind;
      }
      runLen += lay.paddedLen[i] ?? 0;
    }
    if (err !== 0) {
      // iommu_map_sg's error path: iommu_unmap of what it mapped (iommu_unmap_fast into the device's
      // gather, then one iommu_iotlb_sync: the range invalidated, the detached tables freed), then the
      // IOVA goes back.
      if (mapped > 0) iommuUnmap(dev, unsafeIova(iova), mapped);
      iommuDmaFreeIovaForDevice(dev, unsafeDmaAddr(iova), lay.iovaLen);
      return { ret: err === -Errno.ENOMEM ? err : -Errno.EINVAL, iova: 0 };
    }
    iommuSyncMap(dev, unsafeIova(iova), mapped);
  }
  for (let k = 0; k < lay.count; k++) {
    const first = lay.segFirst[k] ?? 0;
    const bus = kinds[first] === EntryKind.BUS_ADDR;
    table.dmaAddress[k] = bus ? (lay.segPos[k] ?? 0) : iova + (lay.segPos[k] ?? 0);
    table.dmaLength[k] = lay.segLen[k] ?? 0;
    if (bus) table.flags[k] = SgDmaFlag.BUS_ADDRESS;
  }
  return { ret: lay.count, iova };
}

/**
 * iommu_dma_unmap_sg: the list lives in one IOVA, so unmap the span from the first IOVA segment to the
 * end of the last one in one go (bus-address segments are skipped).
 */
export function unmapSgClassic(dev: DmaDevice, table: SgTable, mappedEnts: number): void {
  let start = -1;
  let end = 0;
  for (let k = 0; k < mappedEnts; k++) {
    if (((table.flags[k] ?? 0) & SgDmaFlag.BUS_ADDRESS) !== 0) continue;
    const len = table.dmaLength[k] ?? 0;
    if (len === 0) break;
    const a = table.dmaAddress[k] ?? 0;
    if (start < 0) start = a;
    end = a + len;
  }
  if (start >= 0) iommuDmaUnmap(dev, unsafeDmaAddr(start), end - start);
}
