import { PAGE_SIZE } from "../constants.js";
import { INVALID_PHYS_ADDR, IO_TLB_SEGSIZE, IO_TLB_SHIFT, IO_TLB_SIZE, nrSlots } from "./constants.js";

/** What one slot search needs to know about the request and the device. */
export interface SlotRequest {
  /** Original buffer address; 0 means "no original" and skips the min_align_mask match, as upstream. */
  readonly origAddr: number;
  /** Bytes to allocate, including the in-slot alignment offset and any pad slots. */
  readonly allocSize: number;
  readonly allocAlignMask: number;
  /** dma_get_min_align_mask(dev). */
  readonly minAlignMask: number;
  /** dma_get_seg_boundary(dev); undefined means no boundary (ULONG_MAX upstream). */
  readonly segBoundaryMask: number | undefined;
}

/**
 * The slot bookkeeping of one pool (struct io_tlb_pool's slots[] and areas[]), kept in typed arrays.
 *
 * `list[i]` is upstream's free-run length: the number of free slots from i to the end of the free run,
 * which never crosses a segment; 0 means allocated. Allocation and release follow kernel/dma/swiotlb.c
 * (swiotlb_search_pool_area, swiotlb_release_slots) step by step, so the model hands out the same slot
 * the kernel would. One addition: a per-segment count of free slots lets the search jump over segments
 * that cannot hold the request without changing which slot it finds (see `search`).
 */
export class SlotTable {
  readonly nslabs: number;
  readonly nareas: number;
  readonly areaNslabs: number;
  /** Free-run length per slot (0 = allocated). At most IO_TLB_SEGSIZE, so a byte is enough. */
  readonly list: Uint8Array;
  /** Original address each slot bounces, or INVALID_PHYS_ADDR. */
  readonly origAddr: Float64Array;
  /** Bytes from this slot to the end of its allocation (upstream's alloc_size). */
  readonly allocSize: Uint32Array;
  /** Slots of alignment padding before a mapping's first data slot (recorded on that slot). */
  readonly padSlots: Uint16Array;
  /** Free slots per segment. */
  readonly segFree: Uint8Array;
  /** Next search start per area (area->index) and slots used per area (area->used). */
  readonly areaIndex: Uint32Array;
  readonly areaUsed: Uint32Array;
  used = 0;
  hiwater = 0;
  /** Jump over segments without enough free slots (same result as not jumping; tests compare both). */
  readonly skipFullSegments: boolean;

  constructor(nslabs: number, nareas: number, skipFullSegments = true) {
    this.skipFullSegments = skipFullSegments;
    this.nslabs = nslabs;
    this.nareas = nareas;
    this.areaNslabs = nslabs / nareas;
    this.list = new Uint8Array(nslabs);
    this.origAddr = new Float64Array(nslabs).fill(INVALID_PHYS_ADDR);
    this.allocSize = new Uint32Array(nslabs);
    this.padSlots = new Uint16Array(nslabs);
    this.segFree = new Uint8Array(nslabs / IO_TLB_SEGSIZE).fill(IO_TLB_SEGSIZE);
    this.areaIndex = new Uint32Array(nareas);
    this.areaUsed = new Uint32Array(nareas);
    for (let i = 0; i < nslabs; i++) this.list[i] = IO_TLB_SEGSIZE - (i % IO_TLB_SEGSIZE);
  }

  /**
   * swiotlb_search_pool_area(): find and take `nr_slots(allocSize)` slots in one area, or return -1.
   * `tblDmaAddr` is the pool's start as the device sees it.
   */
  search(area: number, req: SlotRequest, tblDmaAddr: number): number {
    const { origAddr, allocSize, minAlignMask } = req;
    const nslots = nrSlots(allocSize);
    const areaNslabs = this.areaNslabs;
    const list = this.list;
    let boundarySlots = Infinity;
    let tbl = tblDmaAddr;
    if (req.segBoundaryMask !== undefined) {
      tbl = tblDmaAddr % (req.segBoundaryMask + 1);
      boundarySlots = Math.floor(req.segBoundaryMask / IO_TLB_SIZE) + 1;
    }
    const tblSlots = nrSlots(tbl);
    const offset = alignOffset(minAlignMask, 0, origAddr);

    // Streaming mappings of a page or more stay page aligned when nothing else asks for alignment
    // (upstream "swiotlb: Reinstate page-alignment for mappings >= PAGE_SIZE").
    let allocAlignMask = req.allocAlignMask;
    if (allocAlignMask === 0 && minAlignMask === 0 && allocSize >= PAGE_SIZE) allocAlignMask = PAGE_SIZE - 1;
    // The in-slot offset keeps the bits below the slot size, so only whole-slot alignment is searched for.
    allocAlignMask = (allocAlignMask | (IO_TLB_SIZE - 1)) >>> 0;
    const iotlbAlignMask = (minAlignMask & ~allocAlignMask) >>> 0;
    const maxMask = Math.max(allocAlignMask, iotlbAlignMask);
    const stride = (maxMask >>> IO_TLB_SHIFT) + 1;
    // When the stride is a power of two covering both masks, every position after the first aligned one
    // stays aligned, so a segment that cannot hold the request can be skipped in one jump that lands
    // exactly where upstream's slot-by-stride walk would.
    const canSkip = this.skipFullSegments && ((maxMask + 1) & maxMask) === 0;
    const origBits = (origAddr & iotlbAlignMask) >>> 0;

    if (nslots > areaNslabs - (this.areaUsed[area] ?? 0)) return -1;
    const slotBase = area * areaNslabs;
    let index = this.areaIndex[area] ?? 0;
    for (let checked = 0; checked < areaNslabs; ) {
      const slot = slotBase + index;
      const tlbAddr = tbl + slot * IO_TLB_SIZE;
      if ((tlbAddr & allocAlignMask) !== 0 || (origAddr !== 0 && ((tlbAddr & iotlbAlignMask) >>> 0) !== origBits)) {
        index = index + 1 >= areaNslabs ? 0 : index + 1;
        checked++;
        continue;
      }
      const seg = Math.floor(slot / IO_TLB_SEGSIZE);
      if (canSkip && (this.segFree[seg] ?? 0) < nslots) {
        const segEnd = (seg + 1) * IO_TLB_SEGSIZE - slotBase;
        const toSegEnd = Math.ceil((segEnd - index) / stride);
        const toWrap = Math.ceil((areaNslabs - index) / stride);
        if (toSegEnd < toWrap) index += toSegEnd * stride;
        else index = 0;
        checked += Math.min(toSegEnd, toWrap) * stride;
        continue;
      }
      if (!isSpanBoundary(slot, nslots, tblSlots, boundarySlots) && (list[slot] ?? 0) >= nslots) {
        this.#take(area, slot, index, nslots, allocSize, offset);
        return slot;
      }
      index = index + stride >= areaNslabs ? 0 : index + stride;
      checked += stride;
    }
    return -1;
  }

  #take(area: number, slot: number, index: number, nslots: number, allocSize: number, offset: number): void {
    const list = this.list;
    for (let i = slot; i < slot + nslots; i++) {
      list[i] = 0;
      this.allocSize[i] = allocSize - (offset + (i - slot) * IO_TLB_SIZE);
    }
    // The free run that ended at `slot` is now shorter: renumber it down to the segment start.
    let count = 0;
    for (let i = slot - 1; i >= 0 && i % IO_TLB_SEGSIZE !== IO_TLB_SEGSIZE - 1 && list[i] !== 0; i--) list[i] = ++count;
    const next = index + nslots;
    this.areaIndex[area] = next >= this.areaNslabs ? 0 : next;
    this.areaUsed[area] = (this.areaUsed[area] ?? 0) + nslots;
    const seg = Math.floor(slot / IO_TLB_SEGSIZE);
    this.segFree[seg] = (this.segFree[seg] ?? 0) - nslots;
    this.used += nslots;
    if (this.used > this.hiwater) this.hiwater = this.used;
  }

  /** swiotlb_release_slots(): give back `nslots` slots starting at `index`, merging free runs. */
  release(index: number, nslots: number): void {
    const list = this.list;
    const segEnd = (Math.floor(index / IO_TLB_SEGSIZE) + 1) * IO_TLB_SEGSIZE;
    let count = index + nslots < segEnd ? (list[index + nslots] ?? 0) : 0;
    for (let i = index + nslots - 1; i >= index; i--) {
      list[i] = ++count;
      this.origAddr[i] = INVALID_PHYS_ADDR;
      this.allocSize[i] = 0;
      this.padSlots[i] = 0;
    }
    for (let i = index - 1; i >= 0 && i % IO_TLB_SEGSIZE !== IO_TLB_SEGSIZE - 1 && list[i] !== 0; i--) list[i] = ++count;
    const area = Math.floor(index / this.areaNslabs);
    this.areaUsed[area] = (this.areaUsed[area] ?? 0) - nslots;
    const seg = Math.floor(index / IO_TLB_SEGSIZE);
    this.segFree[seg] = (this.segFree[seg] ?? 0) + nslots;
    this.used -= nslots;
  }
}

/**
 * swiotlb_align_offset(): the part of the original address's offset that the bounce buffer must keep,
 * as required by the device's min_align_mask, limited to the slot size or the allocation alignment.
 * Masks are 32-bit in the kernel (unsigned int); `&` on a safe integer keeps exactly its low 32 bits.
 */
export function alignOffset(minAlignMask: number, allocAlignMask: number, addr: number): number {
  return (addr & minAlignMask & (allocAlignMask | (IO_TLB_SIZE - 1))) >>> 0;
}

/** iommu_is_span_boundary(): would `nr` slots at `index` cross a segment-boundary window? */
function isSpanBoundary(index: number, nr: number, shift: number, boundarySlots: number): boolean {
  if (boundarySlots === Infinity) return false;
  return ((shift + index) % boundarySlots) + nr > boundarySlots;
}
