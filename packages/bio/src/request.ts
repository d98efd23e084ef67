import { DmaDirection } from "@dmasim/dma";
import type { PhysAddr } from "@dmasim/memory";
import type { Bio, BioVec } from "./bio.js";
import { ReqOp } from "./bio.js";
import { hex } from "@dmasim/trace";
import { BioError, invalid } from "./errors.js";
import { bvecGapToPrev, ffs, getMaxSegmentSize, minNotZero, physMergeable, SECTOR_SIZE } from "./limits.js";
import type { QueueLimits } from "./limits.js";
import { kSetDmaBookkeeping } from "./internal.js";

/** What bio_split_io_at learns about a bio: its DMA segment count and the lowest gap bit between bvecs. */
interface BioShape {
  readonly nrSegs: number;
  /** bi_bvec_gap_bit: ffs of the OR of every bvec boundary offset (0 when there is one bvec). */
  readonly gapBit: number;
}

function phys(bv: BioVec): number {
  return bv.page * 4096 + bv.offset;
}

/**
 * bio_split_io_at without the split: counts the bio's segments under the limits and records its gap bit.
 * Where the kernel would split the bio (too many segments or bytes, a virtual-boundary gap) dmasim refuses
 * it instead, so the caller builds bios that fit; misaligned bvecs are refused as the kernel does.
 */
function bioShape(lim: QueueLimits, bio: Bio): BioShape {
  let nrSegs = 0;
  let gapBit = 0;
  let prev: BioVec | undefined;
  for (let i = 0; i < bio.vecs.length; i++) {
    const bv = at(bio.vecs, i);
    if (bv.offset % (lim.dmaAlignment + 1) !== 0 || bv.len % (lim.dmaAlignment + 1) !== 0) {
      throw new BioError("limits", `bio.vecs[${i}] (offset ${bv.offset}, len ${bv.len}) is invalid: expected offset and length aligned to dma_alignment + 1 = ${lim.dmaAlignment + 1} bytes`);
    }
    if (prev !== undefined) {
      const prevEnd = prev.offset + prev.len;
      if (bvecGapToPrev(lim, prevEnd, bv.offset)) {
        throw new BioError("limits", `bio.vecs[${i}] starts at offset ${bv.offset} after a bvec ending at offset ${prevEnd}: the gap breaks the queue's virtual boundary (mask ${hex(lim.virtBoundaryMask)}); split the bio there`);
      }
      gapBit = minNotZero(gapBit, minNotZero(ffs(bv.offset), ffs(prevEnd)));
    }
    // bvec_split_segs: each bvec is cut at max_segment_size and at segment boundaries.
    let p = phys(bv);
    let left = bv.len;
    while (left > 0) {
      const seg = getMaxSegmentSize(lim, p as PhysAddr, left);
      nrSegs++;
      p += seg;
      left -= seg;
    }
    prev = bv;
  }
  if (nrSegs > lim.maxSegments) {
    throw new BioError("limits", `bio needs ${nrSegs} DMA segments: expected at most max_segments = ${lim.maxSegments}; split the bio`);
  }
  if (bio.size > lim.maxSectors * SECTOR_SIZE) {
    throw new BioError("limits", `bio is ${bio.size} bytes: expected at most max_sectors = ${lim.maxSectors} sectors (${lim.maxSectors * SECTOR_SIZE} bytes); split the bio`);
  }
  if (bio.size % lim.logicalBlockSize !== 0 || (bio.sector * SECTOR_SIZE) % lim.logicalBlockSize !== 0) {
    throw new BioError("limits", `bio (sector ${bio.sector}, ${bio.size} bytes) is invalid: expected whole logical blocks of ${lim.logicalBlockSize} bytes`);
  }
  return { nrSegs, gapBit };
}

/** arr[i] for an index known to be in range. */
export function at<T>(arr: readonly T[], i: number): T {
  const v = arr[i];
  if (v === undefined) throw new RangeError(`index ${i} outside 0..${arr.length - 1} (internal error)`);
  return v;
}

function firstVec(bio: Bio): BioVec {
  return at(bio.vecs, 0);
}

function lastVec(bio: Bio): BioVec {
  return at(bio.vecs, bio.vecs.length - 1);
}

/**
 * struct request: one or more bios for contiguous sectors, merged under the queue's limits. It also
 * carries what the driver's per-request data would: the DMA bookkeeping bytes it currently holds.
 */
export class Request {
  /** The queue limits the request was built and merged under. */
  readonly limits: QueueLimits;
  /** req_op(rq): the operation all of its bios share. */
  readonly op: ReqOp;
  #bios: Bio[];
  #sector: number;
  #dataLen: number;
  #nrPhysSegments: number;
  #physGapBit: number;
  #dmaBookkeeping = 0;

  /** Package-private (keyed by a symbol `.` does not export): sets the DMA bookkeeping bytes held, for the blkRqDmaMap* functions. */
  [kSetDmaBookkeeping](bytes: number): void {
    this.#dmaBookkeeping = bytes;
  }

  /** DMA bookkeeping bytes held for the current mapping (iterator, IOVA state, segment list); 0 when unmapped. */
  get dmaBookkeeping(): number {
    return this.#dmaBookkeeping;
  }

  private constructor(limits: QueueLimits, bio: Bio, shape: BioShape) {
    this.limits = limits;
    this.op = bio.op;
    this.#bios = [bio];
    this.#sector = bio.sector;
    this.#dataLen = bio.size;
    this.#nrPhysSegments = shape.nrSegs;
    this.#physGapBit = shape.gapBit;
  }

  /** blk_mq_bio_to_request (after bio_split_to_limits): a request holding one bio. */
  static fromBio(limits: QueueLimits, bio: Bio): Request {
    return new Request(limits, bio, bioShape(limits, bio));
  }

  /** A request of several bios merged back to back; throws if any of them cannot be merged. */
  static fromBios(limits: QueueLimits, bios: readonly Bio[]): Request {
    const first = bios[0];
    if (first === undefined) throw new BioError("empty", "bios is empty: expected at least one bio (a request with no data cannot be mapped)");
    const rq = Request.fromBio(limits, first);
    for (let i = 1; i < bios.length; i++) {
      const why = rq.backMergeRefusal(at(bios, i));
      if (why !== undefined) throw new BioError(why.reason, `bios[${i}] cannot be merged into the request: ${why.message}`);
      rq.attemptBackMerge(at(bios, i));
    }
    return rq;
  }

  /** The bios in sector order (rq->bio … rq->biotail). */
  get bios(): readonly Bio[] {
    return this.#bios;
  }

  /** blk_rq_pos. */
  get sector(): number {
    return this.#sector;
  }

  /** blk_rq_bytes / blk_rq_payload_bytes. */
  get dataLen(): number {
    return this.#dataLen;
  }

  /** blk_rq_nr_phys_segments: an upper bound of the DMA segments (contiguous bvecs still merge when mapped). */
  get nrPhysSegments(): number {
    return this.#nrPhysSegments;
  }

  /** rq->phys_gap_bit: 1-based lowest bit of any address gap between segments, 0 when none. */
  get physGapBit(): number {
    return this.#physGapBit;
  }

  /** The P2P provider id of the request's pages, 0 for ordinary memory. */
  get p2pOwner(): number {
    return (at(this.#bios, 0)).p2pOwner;
  }

  /**
   * bio_attempt_back_merge after blk_rq_merge_ok + ll_back_merge_fn: appends `bio` when it continues the
   * request on the device and fits the limits. Returns false (request unchanged) otherwise.
   */
  attemptBackMerge(bio: Bio): boolean {
    const why = this.backMergeRefusal(bio);
    if (why !== undefined) return false;
    const shape = bioShape(this.limits, bio);
    this.#physGapBit = this.#segGap(at(this.#bios, this.#bios.length - 1), bio, minNotZero(this.#physGapBit, shape.gapBit));
    this.#bios.push(bio);
    this.#dataLen += bio.size;
    this.#nrPhysSegments += shape.nrSegs;
    return true;
  }

  /** bio_attempt_front_merge: prepends `bio` when it ends where the request starts. */
  attemptFrontMerge(bio: Bio): boolean {
    const common = this.#mergeOk(bio);
    if (common !== undefined) return false;
    if (bio.sector + bio.sectors !== this.#sector) return false;
    let shape: BioShape;
    try {
      shape = bioShape(this.limits, bio);
    } catch {
      return false;
    }
    if (this.#willGap(bio, at(this.#bios, 0), firstVec(bio))) return false;
    if (this.#nrPhysSegments + shape.nrSegs > this.limits.maxSegments) return false;
    this.#physGapBit = this.#segGap(bio, at(this.#bios, 0), minNotZero(this.#physGapBit, shape.gapBit));
    this.#bios.unshift(bio);
    this.#sector = bio.sector;
    this.#dataLen += bio.size;
    this.#nrPhysSegments += shape.nrSegs;
    return true;
  }

  /** Why `bio` cannot be back-merged, or undefined when it can. */
  backMergeRefusal(bio: Bio): { reason: "mixed-p2p" | "limits"; message: string } | undefined {
    const common = this.#mergeOk(bio);
    if (common !== undefined) return common;
    if (this.#sector + this.#dataLen / SECTOR_SIZE !== bio.sector) {
      return { reason: "limits", message: `bio starts at sector ${bio.sector}, the request ends at sector ${this.#sector + this.#dataLen / SECTOR_SIZE}` };
    }
    let shape: BioShape;
    try {
      shape = bioShape(this.limits, bio);
    } catch (e) {
      return { reason: "limits", message: (e as Error).message };
    }
    const tail = at(this.#bios, this.#bios.length - 1);
    if (this.#willGap(tail, bio, firstVec(at(this.#bios, 0)))) {
      return { reason: "limits", message: `the gap between the request's last bvec and the bio's first breaks the virtual boundary (mask ${hex(this.limits.virtBoundaryMask)})` };
    }
    if (this.#nrPhysSegments + shape.nrSegs > this.limits.maxSegments) {
      return { reason: "limits", message: `${this.#nrPhysSegments} + ${shape.nrSegs} segments exceed max_segments = ${this.limits.maxSegments}` };
    }
    return undefined;
  }

  /** blk_rq_merge_ok + the size check of ll_back/front_merge_fn. */
  #mergeOk(bio: Bio): { reason: "mixed-p2p" | "limits"; message: string } | undefined {
    if (bio.op !== this.op) return { reason: "limits", message: `bio op ${bio.op} differs from the request's ${this.op}` };
    if (bio.p2pOwner !== this.p2pOwner) return { reason: "mixed-p2p", message: "a request never mixes P2P and ordinary memory or two P2P providers" };
    if ((this.#dataLen + bio.size) / SECTOR_SIZE > this.limits.maxSectors) {
      return { reason: "limits", message: `${(this.#dataLen + bio.size) / SECTOR_SIZE} sectors exceed max_sectors = ${this.limits.maxSectors}` };
    }
    return undefined;
  }

  /** bio_will_gap: would putting `next` after `prev` leave a hole the virtual boundary forbids? */
  #willGap(prev: Bio, next: Bio, requestFirst: BioVec): boolean {
    const m = this.limits.virtBoundaryMask;
    if (m === 0) return false;
    if (requestFirst.offset % (m + 1) !== 0) return true;
    const pb = lastVec(prev);
    const nb = firstVec(next);
    if (physMergeable(this.limits, phys(pb), pb.len, phys(nb), nb.len)) return false;
    return bvecGapToPrev(this.limits, pb.offset + pb.len, nb.offset);
  }

  /** bio_seg_gap: the gap bit once `next` follows `prev`. */
  #segGap(prev: Bio, next: Bio, gapBit: number): number {
    const pb = lastVec(prev);
    const nb = firstVec(next);
    if (physMergeable(this.limits, phys(pb), pb.len, phys(nb), nb.len)) return gapBit;
    return minNotZero(gapBit, minNotZero(ffs(nb.offset), ffs(pb.offset + pb.len)));
  }
}

/** blk_rq_payload_bytes. */
export function blkRqPayloadBytes(rq: Request): number {
  return rq.dataLen;
}

/** blk_rq_nr_phys_segments. */
export function blkRqNrPhysSegments(rq: Request): number {
  return rq.nrPhysSegments;
}

/** rq_dma_dir: writes go to the device, reads come from it. */
export function rqDmaDir(rq: Request): DmaDirection {
  return rq.op === ReqOp.WRITE ? DmaDirection.TO_DEVICE : DmaDirection.FROM_DEVICE;
}

/**
 * req_phys_gap_mask & mask != 0, without 64-bit masks: true when some gap between the request's segments
 * has a set bit inside `mask` (a 2^k - 1 mask such as the IOMMU merge boundary).
 */
export function reqPhysGapIntersects(rq: Request, mask: number): boolean {
  const bit = rq.physGapBit;
  return bit !== 0 && mask >= 2 ** (bit - 1);
}

export function checkRequest(fn: string, rq: unknown): asserts rq is Request {
  if (!(rq instanceof Request)) throw invalid(`${fn}: req`, rq, "a Request (Request.fromBio / Request.fromBios)");
}
