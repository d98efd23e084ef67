import { PAGE_SIZE, type PhysAddr } from "@dmasim/memory";
import type { Bio } from "./bio.js";
import { getMaxSegmentSize, physMergeable } from "./limits.js";
import { at } from "./request.js";
import type { Request } from "./request.js";

const UINT_MAX = 0xffffffff;

/**
 * struct blk_map_iter: where the walk over a request's bvecs stands (bio, bvec, bytes done), plus the
 * phys vec the last step produced. Plain numbers (the address branded as a type only), reused for every
 * step, so mapping allocates nothing.
 */
export class BlkMapIter {
  /** Index of the current bio in the request. */
  bio = 0;
  /** bi_size of the current bio: bytes left in it. */
  size = 0;
  /** bi_idx: current bvec. */
  idx = 0;
  /** bi_bvec_done: bytes of the current bvec already consumed. */
  done = 0;
  /** struct phys_vec of the last step: its physical address. */
  paddr = 0 as PhysAddr;
  /** Bytes of the struct phys_vec of the last step. */
  len = 0;
}

/** blk_rq_map_iter_init. */
export function blkRqMapIterInit(rq: Request, iter: BlkMapIter): void {
  iter.bio = 0;
  iter.size = at(rq.bios, 0).size;
  iter.idx = 0;
  iter.done = 0;
  iter.paddr = 0 as PhysAddr;
  iter.len = 0;
}

function advance(bio: Bio, iter: BlkMapIter, bytes: number): void {
  iter.size -= bytes;
  iter.done += bytes;
  const bv = bio.vecs[iter.idx];
  if (bv !== undefined && iter.done >= bv.len) {
    iter.idx++;
    iter.done = 0;
  }
}

/** __blk_map_iter_next: true while the current bio has bytes left, else steps to the next bio if any. */
function nextBio(rq: Request, iter: BlkMapIter): boolean {
  if (iter.size !== 0) return true;
  const next = rq.bios[iter.bio + 1];
  if (next === undefined) return false;
  iter.bio++;
  iter.size = next.size;
  iter.idx = 0;
  iter.done = 0;
  return true;
}

/**
 * blk_map_iter_next (block/blk-mq-dma.c): the next phys vec — the current bvec (cut at the segment size
 * limit), extended over every following bvec, also across bios, that is physically contiguous, within one
 * segment-boundary window and under max_segment_size. Returns false when the request is done.
 */
export function blkMapIterNext(rq: Request, iter: BlkMapIter): boolean {
  if (iter.size === 0) return false;
  const lim = rq.limits;
  let bio = at(rq.bios, iter.bio);
  let bv = bio.vecs[iter.idx];
  if (bv === undefined) return false;
  const paddr = (bv.page * PAGE_SIZE + bv.offset + iter.done) as PhysAddr;
  const maxSize = getMaxSegmentSize(lim, paddr, UINT_MAX);
  let len = Math.min(bv.len - iter.done, iter.size, maxSize);
  advance(bio, iter, len);
  // Done with this bvec: see whether the next one (maybe in the next bio) continues it.
  while (iter.size === 0 || iter.done === 0) {
    if (!nextBio(rq, iter)) break;
    bio = at(rq.bios, iter.bio);
    bv = bio.vecs[iter.idx];
    if (bv === undefined) break;
    const nextLen = Math.min(bv.len - iter.done, iter.size);
    const nextAddr = bv.page * PAGE_SIZE + bv.offset + iter.done;
    if (len + nextLen > maxSize || !physMergeable(lim, paddr, len, nextAddr, nextLen)) break;
    len += nextLen;
    advance(bio, iter, nextLen);
  }
  iter.paddr = paddr;
  iter.len = len;
  return true;
}
