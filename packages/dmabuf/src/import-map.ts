import { DmaDirection } from "@dmasim/dma";
import type { SgTable } from "@dmasim/scatterlist";
import { DmaBufAttachment, dmaBufMapAttachment, dmaBufMapPhysList, dmaBufUnmapAttachment, dmaBufUnmapPhysList } from "./dma-buf.js";
import { DmaBufInputError } from "./errors.js";
import { dmaBufPhysListDmaFree, dmaBufPhysListDmaMap, dmaBufPhysListDmaUnlink, dmaBufPhysListDmaUnmap } from "./phys-list.js";
import type { DmaBufPhysList, DmaBufPhysListDma } from "./phys-list.js";

/**
 * How an importer maps its attachment: "sgt" — the exporter's sg_table (dma_buf_map_attachment, the
 * SGT mapping type), or "phys" — the exporter's physical-range list (dma_buf_pal_map_phys in the 2026
 * mapping-type series), which the importer DMA-maps itself with the two-step API.
 */
export type DmaBufImportMapType = "sgt" | "phys";

/**
 * An importer's mapping of its attachment, for either mapping type: the state behind
 * ib_umem_dmabuf_map_pages / ib_umem_dmabuf_unmap_pages (umem_dmabuf->sgt), generalised to the
 * physical-range list. With the list, the importer's own DMA mapping may keep its IOVA across an
 * invalidation (the links undone, the IOVA kept) and relink into it at the next map: no IOVA free and
 * allocation per move. Every dma-buf importer of dmasim (the generic one, the RDMA umem, the NVMe
 * token) maps through this one object: `mapLocked`, `unmapLocked(keepIova)`, `freeKeptIova`.
 */
export class DmaBufImportMap {
  /** The importer's attachment. */
  readonly attach: DmaBufAttachment;
  /** The mapping type. */
  readonly type: DmaBufImportMapType;
  /** The DMA direction the buffer is mapped for. */
  readonly dir: DmaDirection;
  #sgt: SgTable | undefined;
  #list: DmaBufPhysList | undefined;
  #dma: DmaBufPhysListDma | undefined;
  /** The last physical-range mapping, unlinked with its IOVA kept for the next map. */
  #kept: DmaBufPhysListDma | undefined;

  /** A mapping of `attach` of type `type` for `dir` (default BIDIRECTIONAL); nothing is mapped yet. */
  constructor(attach: DmaBufAttachment, type: DmaBufImportMapType, dir: DmaDirection = DmaDirection.BIDIRECTIONAL) {
    const fn = "DmaBufImportMap";
    if (!(attach instanceof DmaBufAttachment)) throw new DmaBufInputError(fn, "attach", attach, "a DmaBufAttachment");
    if ((type as unknown) !== "sgt" && (type as unknown) !== "phys") throw new DmaBufInputError(fn, "type", type, '"sgt" or "phys"');
    if (dir !== DmaDirection.BIDIRECTIONAL && dir !== DmaDirection.TO_DEVICE && dir !== DmaDirection.FROM_DEVICE) {
      throw new DmaBufInputError(fn, "dir", dir, "DmaDirection.BIDIRECTIONAL, TO_DEVICE or FROM_DEVICE");
    }
    this.attach = attach;
    this.type = type;
    this.dir = dir;
  }

  /** True while the buffer is mapped for the importer's device. */
  get mapped(): boolean {
    return this.#sgt !== undefined || this.#dma !== undefined;
  }

  /** The current sg_table ("sgt"), if mapped. */
  get sgt(): SgTable | undefined {
    return this.#sgt;
  }

  /** The current physical-range list ("phys"), if mapped. */
  get physList(): DmaBufPhysList | undefined {
    return this.#list;
  }

  /** The importer's own DMA mapping of that list ("phys"), if mapped. */
  get physDma(): DmaBufPhysListDma | undefined {
    return this.#dma;
  }

  /** The current device mapping: the sg_table or the list's DMA mapping; undefined when not mapped. */
  get deviceMapping(): SgTable | DmaBufPhysListDma | undefined {
    return this.#sgt ?? this.#dma;
  }

  /** True while an unlinked IOVA is kept for the next map ("phys" only). */
  get keptIova(): boolean {
    return this.#kept !== undefined;
  }

  /** Segments of the current mapping (sg_table entries or list ranges); 0 when not mapped. */
  get nrSegments(): number {
    return this.#sgt?.nents ?? this.#list?.nrRanges ?? 0;
  }

  /** The DMA address of each segment of the current mapping (valid for the first `nrSegments`). */
  get segmentDmaAddr(): Float64Array | undefined {
    return this.#sgt?.dmaAddress ?? this.#dma?.dmaAddr;
  }

  /** The DMA length of each segment of the current mapping (valid for the first `nrSegments`). */
  get segmentDmaLen(): Float64Array | undefined {
    return this.#sgt?.dmaLength ?? this.#list?.len;
  }

  /**
   * Maps the attachment for the importer's device unless it is mapped already (the mapping step of
   * ib_umem_dmabuf_map_pages; the reservation lock must be held, and the importer waits for the KERNEL
   * fences itself before any DMA). "sgt": dma_buf_map_attachment. "phys": dma_buf_pal_map_phys, then the
   * importer's own two-step mapping of the list — into the IOVA an earlier unmap kept when it is big
   * enough. 0, or the exporter's errno (-ENODEV for a revoked VFIO buffer), -EINVAL (a P2P route the
   * device cannot take), -ENOMEM (IOVA space); a failure leaves nothing mapped.
   */
  mapLocked(): number {
    if (this.mapped) return 0;
    if (this.type === "sgt") {
      const sgt = dmaBufMapAttachment(this.attach, this.dir);
      if (typeof sgt === "number") return sgt;
      this.#sgt = sgt;
      return 0;
    }
    const list = dmaBufMapPhysList(this.attach);
    if (typeof list === "number") return list;
    const dma = dmaBufPhysListDmaMap(this.attach.dev, list, this.dir, this.#kept);
    // dmaBufPhysListDmaMap took the kept IOVA over (reused it or gave it back) either way.
    this.#kept = undefined;
    if (typeof dma === "number") {
      dmaBufUnmapPhysList(this.attach, list);
      return dma;
    }
    this.#list = list;
    this.#dma = dma;
    return 0;
  }

  /**
   * Gives the mapping back (reservation lock held; nothing when not mapped): the sg_table to the
   * exporter (ib_umem_dmabuf_unmap_pages), or the list's DMA mapping undone and the list returned.
   * `keepIova`: the links are undone but the IOVA is kept for the next mapLocked (an importer that
   * follows moves); otherwise the IOVA — and one kept before — is freed.
   */
  unmapLocked(keepIova: boolean): void {
    if (this.#sgt !== undefined) {
      dmaBufUnmapAttachment(this.attach, this.#sgt, this.dir);
      this.#sgt = undefined;
    }
    if (this.#dma !== undefined) {
      if (keepIova) {
        dmaBufPhysListDmaUnlink(this.#dma);
        this.#kept = this.#dma;
      } else {
        dmaBufPhysListDmaUnmap(this.#dma);
      }
      this.#dma = undefined;
    }
    if (!keepIova) this.freeKeptIova();
    if (this.#list !== undefined) {
      dmaBufUnmapPhysList(this.attach, this.#list);
      this.#list = undefined;
    }
  }

  /** Gives back the IOVA an unmap kept (the importer's release); nothing when none is kept. */
  freeKeptIova(): void {
    if (this.#kept !== undefined) {
      dmaBufPhysListDmaFree(this.#kept);
      this.#kept = undefined;
    }
  }
}
