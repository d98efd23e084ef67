import type { PhysAddr } from "@dmasim/memory";
import { invalid } from "./errors.js";

/**
 * The part of `struct queue_limits` (include/linux/blkdev.h) that decides how a request is cut into DMA
 * segments. Sizes are in bytes except `maxSectors` (512-byte sectors, as the kernel keeps it).
 */
export interface QueueLimits {
  /** logical_block_size: every request is a whole number of these. */
  readonly logicalBlockSize: number;
  /** max_sectors: the largest request, in 512-byte sectors. */
  readonly maxSectors: number;
  /** max_segments: DMA segments a request may have (nr_phys_segments). */
  readonly maxSegments: number;
  /** max_segment_size: the longest DMA segment. */
  readonly maxSegmentSize: number;
  /** seg_boundary_mask: no segment may cross a (mask + 1)-aligned boundary. */
  readonly segBoundaryMask: number;
  /** virt_boundary_mask: every segment but the first starts, and every one but the last ends, on it (0 = none). */
  readonly virtBoundaryMask: number;
  /** dma_alignment: the offset and length of every bvec must be a multiple of (mask + 1). */
  readonly dmaAlignment: number;
}

/** log2 of SECTOR_SIZE: the block layer counts in 512-byte sectors whatever the device's block size. */
export const SECTOR_SHIFT = 9;
/** Bytes in a sector (SECTOR_SIZE), the unit of bi_sector and max_sectors. */
export const SECTOR_SIZE = 512;
/** BLK_MAX_SEGMENTS, BLK_MAX_SEGMENT_SIZE, BLK_SEG_BOUNDARY_MASK, BLK_DEF_MAX_SECTORS_CAP. */
export const BLK_MAX_SEGMENTS = 128;
/** BLK_MAX_SEGMENT_SIZE: the default max_segment_size, 64 KiB. */
export const BLK_MAX_SEGMENT_SIZE = 65536;
/** BLK_SEG_BOUNDARY_MASK: by default no segment may cross a 4 GiB boundary. */
export const BLK_SEG_BOUNDARY_MASK = 0xffffffff;
/** BLK_DEF_MAX_SECTORS_CAP: the default cap of max_sectors (1280 KiB). */
export const BLK_DEF_MAX_SECTORS_CAP = 2560;
const UINT_MAX = 0xffffffff;

function isMask(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0 && Number.isInteger(Math.log2(n + 1));
}

/**
 * blk_validate_limits: fills defaults and refuses inconsistent limits. As in the kernel, a queue with a
 * virtual boundary gets an unlimited max_segment_size unless one is given (segments are bounded by the
 * boundary instead).
 */
export function queueLimits(input: Partial<QueueLimits> = {}): QueueLimits {
  const virtBoundaryMask = input.virtBoundaryMask ?? 0;
  const lim: QueueLimits = {
    logicalBlockSize: input.logicalBlockSize ?? SECTOR_SIZE,
    maxSectors: input.maxSectors ?? BLK_DEF_MAX_SECTORS_CAP,
    maxSegments: input.maxSegments ?? BLK_MAX_SEGMENTS,
    maxSegmentSize: input.maxSegmentSize ?? (virtBoundaryMask !== 0 ? UINT_MAX : BLK_MAX_SEGMENT_SIZE),
    segBoundaryMask: input.segBoundaryMask ?? BLK_SEG_BOUNDARY_MASK,
    virtBoundaryMask,
    dmaAlignment: input.dmaAlignment ?? SECTOR_SIZE - 1,
  };
  const lbs = lim.logicalBlockSize;
  if (!Number.isSafeInteger(lbs) || lbs < SECTOR_SIZE || lbs > 65536 || !isMask(lbs - 1)) {
    throw invalid("limits.logicalBlockSize", lbs, "a power of two from 512 to 65536");
  }
  if (!Number.isSafeInteger(lim.maxSectors) || lim.maxSectors * SECTOR_SIZE < lbs) {
    throw invalid("limits.maxSectors", lim.maxSectors, `an integer number of 512-byte sectors covering at least one ${lbs}-byte block`);
  }
  if (!Number.isSafeInteger(lim.maxSegments) || lim.maxSegments < 1 || lim.maxSegments > 65535) {
    throw invalid("limits.maxSegments", lim.maxSegments, "an integer from 1 to 65535");
  }
  if (!isMask(lim.segBoundaryMask) || lim.segBoundaryMask < 4095) {
    throw invalid("limits.segBoundaryMask", lim.segBoundaryMask, "2^n - 1 with 2^n >= 4096");
  }
  if (!isMask(lim.virtBoundaryMask) || lim.virtBoundaryMask > 65535) {
    throw invalid("limits.virtBoundaryMask", lim.virtBoundaryMask, "0 or 2^n - 1 up to 65535");
  }
  if (!Number.isSafeInteger(lim.maxSegmentSize) || lim.maxSegmentSize < 4096 || lim.maxSegmentSize > UINT_MAX) {
    throw invalid("limits.maxSegmentSize", lim.maxSegmentSize, "an integer from 4096 to 2^32 - 1");
  }
  if (!isMask(lim.dmaAlignment) || lim.dmaAlignment > 4095) {
    throw invalid("limits.dmaAlignment", lim.dmaAlignment, "2^n - 1 below 4096");
  }
  return Object.freeze(lim);
}

/** Low bits of `n` under a mask of the form 2^k - 1 (exact for any safe integer; no 32-bit ops). */
export function lowBits(n: number, mask: number): number {
  return n % (mask + 1);
}

/**
 * get_max_segment_size (block/blk.h): how long a segment starting at `paddr` may be — up to the next
 * segment boundary, max_segment_size and `maxLen`.
 */
export function getMaxSegmentSize(lim: QueueLimits, paddr: PhysAddr, maxLen: number): number {
  const toBoundary = lim.segBoundaryMask - lowBits(paddr, lim.segBoundaryMask) + 1;
  return Math.min(toBoundary, lim.maxSegmentSize, maxLen);
}

/**
 * biovec_phys_mergeable (block/blk.h) for two ranges of the same kind of memory: physically adjacent and
 * inside one segment-boundary window. (The same-pgmap check is the caller's: a request never mixes kinds.)
 */
export function physMergeable(lim: QueueLimits, addr1: number, len1: number, addr2: number, len2: number): boolean {
  if (addr1 + len1 !== addr2) return false;
  const window = lim.segBoundaryMask + 1;
  return Math.floor(addr1 / window) === Math.floor((addr2 + len2 - 1) / window);
}

/**
 * __bvec_gap_to_prev / bvec_gap_to_prev (block/blk.h): would a bvec starting at in-page `offset` after one
 * ending at in-page `prevEnd` leave a hole the device's virtual boundary cannot express?
 */
export function bvecGapToPrev(lim: QueueLimits, prevEnd: number, offset: number): boolean {
  const m = lim.virtBoundaryMask;
  if (m === 0) return false;
  return lowBits(offset, m) !== 0 || lowBits(prevEnd, m) !== 0;
}

/** ffs(): 1-based index of the lowest set bit, 0 for 0 (any safe integer). */
export function ffs(n: number): number {
  if (n === 0) return 0;
  let bit = 1;
  while (n % 2 === 0) {
    n /= 2;
    bit++;
  }
  return bit;
}

/** min_not_zero. */
export function minNotZero(a: number, b: number): number {
  if (a === 0) return b;
  if (b === 0) return a;
  return Math.min(a, b);
}
