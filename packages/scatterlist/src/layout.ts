import { EntryKind } from "./classify.js";
import type { Classified } from "./classify.js";
import { SgScratch } from "./scratch.js";
import type { SgTable } from "./sg-table.js";
import { modPow2 } from "./util.js";

/**
 * The layout iommu_dma_map_sg gives a list inside its single IOVA (drivers/iommu/dma-iommu.c), and the
 * DMA segments __finalise_sg then hands back, computed without touching any IOVA or page table. Both
 * iommu-dma implementations use it: the classic one maps exactly this layout, the two-step one reproduces
 * its segments (count, lengths, bytes) with dma_iova_* calls.
 *
 * Positions are relative to the start of the IOVA. The allocation is size-aligned (alloc_iova_fast rounds
 * to a power of two), so when the IOVA is larger than a segment-boundary window it starts on a boundary,
 * and when it is not it lies inside one window: either way an address is on a boundary exactly when its
 * relative position is a multiple of the window. That is what lets upstream lay the list out (and this
 * function compute the merge decisions) before the IOVA exists.
 */
export interface SgLayout {
  /** Bytes of IOVA the classic path allocates (iova_len), boundary padding included. */
  readonly iovaLen: number;
  /** Per entry: offset inside its granule, granule-rounded length, padded length, position in the IOVA. */
  readonly off: Float64Array;
  readonly alignedLen: Float64Array;
  readonly paddedLen: Float64Array;
  readonly pos: Float64Array;
  /** Output DMA segments: count, first and last CPU entry, data position (or bus address), length. */
  readonly count: number;
  readonly segFirst: Uint32Array;
  readonly segLast: Uint32Array;
  readonly segPos: Float64Array;
  readonly segLen: Float64Array;
}

/**
 * Lays out the first `nents` entries for a device with IOVA granule `granule`, segment boundary mask
 * `segMask` and max segment size `maxSeg`. The result lives in `scratch` (the call's, at least `nents` long).
 */
export function sgLayout(table: SgTable, nents: number, cls: Classified, granule: number, segMask: number, maxSeg: number, scratch: SgScratch = new SgScratch(nents)): SgLayout {
  const { off, alignedLen, paddedLen, pos, segFirst, segLast, segPos, segLen } = scratch;
  const kinds = cls.kinds;
  const phys = table.phys;
  const length = table.length;
  const busAddr = cls.busAddr;
  // The IOVA domain keeps its granule a power of two of at most 4 KiB, so a mask gives in-granule offsets.
  const gmask = granule - 1;
  const window = segMask + 1;
  // One pass does both loops of upstream. The loop of iommu_dma_map_sg granule-aligns every IOVA entry
  // and pads the previous one when this one would otherwise cross a boundary (pad_len = (mask - iova_len
  // + 1) & mask). __finalise_sg then merges an entry into the current segment when it starts on a granule,
  // does not start a boundary window, and keeps the segment within max_seg_size; and an entry that ends
  // short of its padded length closes the segment. Whether an entry gets padded is only known at the next
  // entry, but padding puts that next entry on a boundary, where it starts a segment anyway; so closing
  // on an unaligned end alone, as each entry is placed, gives upstream's segments.
  let iovaLen = 0;
  let prev = -1;
  let count = 0;
  let curLen = 0;
  for (let i = 0; i < nents; i++) {
    const len = length[i] ?? 0;
    if (kinds[i] === EntryKind.BUS_ADDR) {
      segFirst[count] = i;
      segLast[count] = i;
      segPos[count] = busAddr[i] ?? 0;
      segLen[count] = len;
      count++;
      curLen = 0;
      continue;
    }
    const o = ((phys[i] ?? 0) >>> 0) & gmask;
    const x = len + o;
    const r = (x >>> 0) & gmask;
    const a = r === 0 ? x : x + granule - r;
    off[i] = o;
    alignedLen[i] = a;
    paddedLen[i] = a;
    // Where the entry starts inside its boundary window; padding moves it to the start of the next one.
    let rem = modPow2(iovaLen, window);
    if (rem !== 0 && prev >= 0 && window - rem < a - 1) {
      paddedLen[prev] = (paddedLen[prev] ?? 0) + window - rem;
      iovaLen += window - rem;
      rem = 0;
    }
    pos[i] = iovaLen;
    if (curLen > 0 && o === 0 && maxSeg - curLen >= len && rem !== 0) {
      curLen += len;
      segLast[count - 1] = i;
      segLen[count - 1] = curLen;
    } else {
      segFirst[count] = i;
      segLast[count] = i;
      segPos[count] = iovaLen + o;
      segLen[count] = len;
      curLen = len;
      count++;
    }
    if (r !== 0) curLen = 0;
    iovaLen += a;
    prev = i;
  }
  return { iovaLen, off, alignedLen, paddedLen, pos, count, segFirst, segLast, segPos, segLen };
}
