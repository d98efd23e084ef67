import { DMA_ATTR_MMIO, DMA_MAPPING_ERROR, DmaIovaState, dmaIovaDestroy, dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc, dmaMapPhys, dmaUnmapPhys, unsafeDmaAddr } from "@dmasim/dma";
import type { DmaDirection } from "@dmasim/dma";
import { PciP2pdmaMapType } from "@dmasim/pcie-p2p";
import type { P2pdmaProvider } from "@dmasim/pcie-p2p";
import { SgTable, sgAllocTable, sgFreeTable } from "@dmasim/scatterlist";
import { DmaBufErrno, MAX_SG_ENT_SZ } from "./constants.js";
import { DmaBufAttachment, checkDirection } from "./dma-buf.js";
import { DmaBufInputError } from "./errors.js";
import { kSgtPrivate } from "./internal.js";
import type { PhysAddr } from "@dmasim/memory";

/** struct dma_buf_phys_vec (struct phys_vec in 6.19): one physical range. */
export interface DmaBufPhysVec {
  /** Physical address of the range. */
  readonly paddr: PhysAddr;
  /** Bytes in the range. */
  readonly len: number;
}

/** dma-buf-mapping.c's private struct dma_buf_dma: what dma_buf_free_sgt needs to undo the mapping. */
interface DmaBufDma {
  readonly state: DmaIovaState | undefined;
  readonly size: number;
  readonly busAddr: boolean;
}

/**
 * How the helper runs: "dmasim" is the intended behaviour; "upstream" reproduces the two bugs of the
 * 6.19 and 7.x source (every range linked at IOVA offset 0; the running mapped length kept in 32 bits),
 * for the tests that show what upstream returns. Not exported from the package.
 */
export type PhysVecToSgtFlavour = "dmasim" | "upstream";

/** fill_sg_entry: DMA segments of at most MAX_SG_ENT_SZ from `addr`; returns the next entry. */
function fillSgEntry(sgt: SgTable, at: number, length: number, addr: number): number {
  let i = at;
  for (let done = 0; done < length; i++) {
    const len = Math.min(length - done, MAX_SG_ENT_SZ);
    sgt.dmaAddress[i] = addr + done;
    sgt.dmaLength[i] = len;
    done += len;
  }
  return i;
}

/**
 * dma_buf_phys_vec_to_sgt (drivers/dma-buf/dma-buf-mapping.c, 6.19+), for exporters of MMIO: the
 * reservation lock is held; `provider` is required (-EINVAL). pci_p2pdma_map_type decides:
 * BUS_ADDR → each range at paddr + bus_offset, no IOVA; THRU_HOST_BRIDGE → one IOVA for `size`, a
 * dma_iova_link per range with DMA_ATTR_MMIO at its running offset, one dma_iova_sync, and one DMA
 * segment run at state.addr (without iommu-dma: dma_map_phys per range); anything else → -EINVAL.
 * The table has no CPU side (upstream sets orig_nents = 0; here phys[] stays 0: sg_page is NULL).
 * Errors are unwound. Upstream's two bugs are not reproduced (see the README); pass flavour "upstream"
 * (tests only) to see what upstream returns.
 */
export function dmaBufPhysVecToSgt(
  attach: DmaBufAttachment,
  provider: P2pdmaProvider | undefined,
  physVec: readonly DmaBufPhysVec[],
  nrRanges: number,
  size: number,
  dir: DmaDirection,
  flavour: PhysVecToSgtFlavour = "dmasim",
): SgTable | number {
  const fn = "dma_buf_phys_vec_to_sgt";
  if (!(attach instanceof DmaBufAttachment)) throw new DmaBufInputError(fn, "attach", attach, "a DmaBufAttachment");
  checkDirection(fn, dir);
  const vecs: unknown = physVec;
  if (!Array.isArray(vecs)) throw new DmaBufInputError(fn, "physVec", physVec, "an array of { paddr, len }");
  if (!Number.isSafeInteger(nrRanges) || nrRanges <= 0 || nrRanges > physVec.length) throw new DmaBufInputError(fn, "nrRanges", nrRanges, `a count 1..${physVec.length}`);
  let total = 0;
  for (let i = 0; i < nrRanges; i++) {
    const v: DmaBufPhysVec | undefined = physVec[i];
    if (v === undefined || !Number.isSafeInteger(v.paddr) || v.paddr < 0 || !Number.isSafeInteger(v.len) || v.len <= 0) {
      throw new DmaBufInputError(fn, `physVec[${i}]`, v, "{ paddr, len } with a physical address and a length > 0");
    }
    total += v.len;
  }
  if (!Number.isSafeInteger(size) || size !== total) throw new DmaBufInputError(fn, "size", size, `the sum of the ranges' lengths (${total})`);
  const buf = attach.dmabuf;
  const dev = attach.dev;
  buf.resv.assertHeld(fn, dev.bdf);
  if (provider === undefined) return -DmaBufErrno.EINVAL;
  const type = dev.kernel.platform.pciP2pdmaMapType(provider, dev.bdf);
  if (type !== PciP2pdmaMapType.BUS_ADDR && type !== PciP2pdmaMapType.THRU_HOST_BRIDGE) return -DmaBufErrno.EINVAL;
  const busAddr = type === PciP2pdmaMapType.BUS_ADDR;
  let state: DmaIovaState | undefined;
  if (!busAddr) {
    state = new DmaIovaState();
    // Upstream passes phys 0: MMIO ranges of a BAR start page aligned.
    if (!dmaIovaTryAlloc(dev, state, 0 as PhysAddr, size)) state = undefined;
  }
  // calc_sg_nents
  let nents = 0;
  if (state === undefined) for (let i = 0; i < nrRanges; i++) nents += Math.ceil((physVec[i]?.len ?? 0) / MAX_SG_ENT_SZ);
  else nents = Math.ceil(size / MAX_SG_ENT_SZ);
  const sgt = sgAllocTable(dev.kernel.trace, nents);
  let mappedLen = 0;
  let entry = 0;
  const unwind = (err: number): number => {
    if (state !== undefined) {
      dmaIovaDestroy(dev, state, mappedLen, dir, DMA_ATTR_MMIO);
    } else if (!busAddr) {
      for (let j = 0; j < entry; j++) dmaUnmapPhys(dev, unsafeDmaAddr(sgt.dmaAddress[j] ?? 0), sgt.dmaLength[j] ?? 0, dir, DMA_ATTR_MMIO);
    }
    sgFreeTable(sgt);
    return err;
  };
  for (let i = 0; i < nrRanges; i++) {
    const v = physVec[i];
    if (v === undefined) continue;
    if (state !== undefined) {
      // Upstream links at offset 0 every time: the second range overwrites the first one's IOVA.
      const offset = flavour === "upstream" ? 0 : mappedLen;
      const err = dmaIovaLink(dev, state, v.paddr, offset, v.len, dir, DMA_ATTR_MMIO);
      if (err !== 0) return unwind(err);
    } else {
      let addr: number;
      if (busAddr) {
        addr = v.paddr + provider.busOffset;
      } else {
        addr = dmaMapPhys(dev, v.paddr, v.len, dir, DMA_ATTR_MMIO);
        if (addr === DMA_MAPPING_ERROR) return unwind(-DmaBufErrno.ENOMEM);
      }
      entry = fillSgEntry(sgt, entry, v.len, addr);
    }
    mappedLen += v.len;
    // Upstream's `unsigned int mapped_len` wraps at 4 GiB (fixed for stable in 2026, size_t).
    if (flavour === "upstream") mappedLen = mappedLen >>> 0;
  }
  if (state !== undefined) {
    const err = dmaIovaSync(dev, state, 0, mappedLen);
    if (err !== 0) return unwind(err);
    entry = fillSgEntry(sgt, 0, mappedLen, state.addr);
  }
  sgt.nents = nents;
  const priv: DmaBufDma = { state, size, busAddr };
  buf.system[kSgtPrivate].set(sgt, priv);
  return sgt;
}

/**
 * dma_buf_free_sgt (resv held): dma_iova_destroy of the whole size, or dma_unmap_phys of each entry
 * (nothing for bus addresses), then the table is freed.
 */
export function dmaBufFreeSgt(attach: DmaBufAttachment, sgt: SgTable, dir: DmaDirection): void {
  const fn = "dma_buf_free_sgt";
  if (!(attach instanceof DmaBufAttachment)) throw new DmaBufInputError(fn, "attach", attach, "a DmaBufAttachment");
  checkDirection(fn, dir);
  const sys = attach.dmabuf.system;
  const priv = sys[kSgtPrivate].get(sgt) as DmaBufDma | undefined;
  if (!(sgt instanceof SgTable) || priv === undefined) throw new DmaBufInputError(fn, "sgt", sgt, "a table made by dmaBufPhysVecToSgt and not freed");
  attach.dmabuf.resv.assertHeld(fn, attach.dev.bdf);
  const dev = attach.dev;
  if (priv.state !== undefined) {
    dmaIovaDestroy(dev, priv.state, priv.size, dir, DMA_ATTR_MMIO);
  } else if (!priv.busAddr) {
    for (let i = 0; i < sgt.nents; i++) dmaUnmapPhys(dev, unsafeDmaAddr(sgt.dmaAddress[i] ?? 0), sgt.dmaLength[i] ?? 0, dir, DMA_ATTR_MMIO);
  }
  sys[kSgtPrivate].delete(sgt);
  sgFreeTable(sgt);
}
