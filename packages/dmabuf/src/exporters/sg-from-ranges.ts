import type { DmaDirection } from "@dmasim/dma";
import { SgTable, sgAllocTable, sgFreeTable } from "@dmasim/scatterlist";
import type { DmaBufAttachment } from "../dma-buf.js";
import { DmaBufPhysList, DmaBufPhysListDma, dmaBufPhysListDmaMap, dmaBufPhysListDmaUnmap } from "../phys-list.js";

/**
 * An exporter's map_dma_buf over a mix of RAM and P2P ranges (what amdgpu and xe build by hand): the
 * exporter maps the ranges for the importer's device (one IOVA, a link per range, one sync; bus
 * addresses for P2P through a switch) and hands the DMA segments over in an sg_table whose CPU side is
 * empty (sg_page NULL, as dma_buf_phys_vec_to_sgt does). DMA-contiguous ranges share one segment.
 * The exporter keeps the mapping (`maps`) to undo it in unmap.
 */
export function sgtFromRanges(attach: DmaBufAttachment, list: DmaBufPhysList, dir: DmaDirection, maps: WeakMap<SgTable, DmaBufPhysListDma>): SgTable | number {
  const m = dmaBufPhysListDmaMap(attach.dev, list, dir);
  if (typeof m === "number") return m;
  let nents = 0;
  let end = -1;
  for (let i = 0; i < list.nrRanges; i++) {
    const a = m.dmaAddr[i] ?? 0;
    if (a !== end) nents++;
    end = a + (list.len[i] ?? 0);
  }
  const sgt = sgAllocTable(attach.dev.kernel.trace, nents);
  let j = -1;
  end = -1;
  for (let i = 0; i < list.nrRanges; i++) {
    const a = m.dmaAddr[i] ?? 0;
    const len = list.len[i] ?? 0;
    if (a !== end) {
      j++;
      sgt.dmaAddress[j] = a;
      sgt.dmaLength[j] = 0;
    }
    sgt.dmaLength[j] = (sgt.dmaLength[j] ?? 0) + len;
    end = a + len;
  }
  maps.set(sgt, m);
  return sgt;
}

/** Undoes sgtFromRanges. */
export function freeSgtFromRanges(sgt: SgTable, maps: WeakMap<SgTable, DmaBufPhysListDma>): void {
  const m = maps.get(sgt);
  if (m === undefined) return;
  maps.delete(sgt);
  dmaBufPhysListDmaUnmap(m);
  sgFreeTable(sgt);
}
