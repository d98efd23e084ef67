import { PAGE_SIZE, PageFlag } from "@dmasim/memory";
import type { PhysAddr, PhysicalMemory } from "@dmasim/memory";
import { hex } from "@dmasim/trace";
import { BioError, invalid } from "./errors.js";
import { SECTOR_SIZE } from "./limits.js";

/** REQ_OP_READ / REQ_OP_WRITE (enum req_op). */
export const ReqOp = { READ: 0, WRITE: 1 } as const;
export type ReqOp = (typeof ReqOp)[keyof typeof ReqOp];

/**
 * struct bio_vec: `len` bytes starting `offset` bytes into page frame `page`. A bvec may run over several
 * physically contiguous pages (a multi-page bvec) as long as they are all the same kind of memory.
 */
export interface BioVec {
  /** bv_page, as a page frame number. */
  readonly page: number;
  /** bv_offset: byte offset from the start of `page` (may exceed a page for a folio-sized bvec). */
  readonly offset: number;
  /** bv_len. */
  readonly len: number;
}

/** bvec_phys: the physical address of the bvec's first byte. */
export function bvecPhys(bv: BioVec): PhysAddr {
  return (bv.page * PAGE_SIZE + bv.offset) as PhysAddr;
}

/** A bvec describing `len` bytes at physical address `phys` (page and in-page offset split out). */
export function bvecAt(phys: PhysAddr, len: number): BioVec {
  return { page: Math.floor(phys / PAGE_SIZE), offset: phys % PAGE_SIZE, len };
}

/** What a `Bio` is built from: the operation, the first sector and the memory ranges. */
export interface BioOptions {
  /** The operation (bio_op): read or write. */
  readonly op: ReqOp;
  /** bi_iter.bi_sector: where on the device the I/O starts, in 512-byte sectors. */
  readonly sector: number;
  /** The bio_vecs: page, offset and length of each memory range, in I/O order. */
  readonly vecs: readonly BioVec[];
}

/**
 * struct bio: one I/O to contiguous sectors from (or to) a list of memory ranges. Built once and then
 * immutable; constructing it checks every page it touches, as bio_add_page would refuse them:
 * every page must have a struct page, a bvec may not run from one kind of memory into another, and a bio
 * never mixes P2P memory with ordinary memory or two P2P providers (zone_device_pages_have_same_pgmap).
 */
export class Bio {
  /** bio_op(bio): read or write. */
  readonly op: ReqOp;
  /** bi_iter.bi_sector: where on the device the I/O starts, in 512-byte sectors. */
  readonly sector: number;
  /** bi_io_vec: the memory ranges, in I/O order. */
  readonly vecs: readonly BioVec[];
  /** bi_iter.bi_size: total bytes. */
  readonly size: number;
  /** The P2P provider id (pgmap owner) of every page, or 0 for ordinary memory. */
  readonly p2pOwner: number;

  constructor(memory: PhysicalMemory, options: BioOptions) {
    const { op, sector, vecs } = options;
    if ((op as number) !== ReqOp.READ && (op as number) !== ReqOp.WRITE) throw invalid("bio.op", op, "ReqOp.READ or ReqOp.WRITE");
    if (!Number.isSafeInteger(sector) || sector < 0) throw invalid("bio.sector", sector, "a non-negative integer sector");
    if (vecs.length === 0) throw new BioError("empty", "bio.vecs is empty: expected at least one bvec (a bio with no data cannot be mapped)");
    let size = 0;
    let owner = -1;
    for (let i = 0; i < vecs.length; i++) {
      const bv = vecs[i];
      if (typeof bv !== "object") throw invalid(`bio.vecs[${i}]`, bv, "a BioVec");
      const vOwner = checkBvec(memory, bv, `bio.vecs[${i}]`);
      if (owner === -1) owner = vOwner;
      else if (vOwner !== owner) {
        throw new BioError("mixed-p2p", `bio.vecs[${i}] is ${kind(vOwner)} but bio.vecs[0] is ${kind(owner)}: a bio never mixes P2P and ordinary memory or two P2P providers`);
      }
      size += bv.len;
    }
    if (size % SECTOR_SIZE !== 0) throw invalid("bio size", size, "a multiple of 512 bytes");
    if (!Number.isSafeInteger(sector + size / SECTOR_SIZE)) throw invalid("bio.sector", sector, "an I/O that ends at a safe integer sector");
    this.op = op;
    this.sector = sector;
    this.vecs = Object.freeze([...vecs]);
    this.size = size;
    this.p2pOwner = owner;
  }

  /** bio_sectors. */
  get sectors(): number {
    return this.size / SECTOR_SIZE;
  }

  /** bio_for_each_bvec: the (multi-page) bvecs, as stored. */
  bvecs(): IterableIterator<BioVec> {
    return this.vecs[Symbol.iterator]();
  }

  /** bio_for_each_segment: the data split at page boundaries, one single-page bvec at a time. */
  *segments(): Generator<BioVec> {
    const iter = new BvecIter(this);
    while (iter.size > 0) {
      const bv = iter.bvec(this.vecs, PAGE_SIZE);
      yield bv;
      iter.advance(this.vecs, bv.len);
    }
  }
}

function kind(owner: number): string {
  return owner === 0 ? "ordinary memory" : `P2P memory of provider ${owner}`;
}

/** Validates one bvec and returns the P2P owner of its pages (0 for ordinary memory). */
function checkBvec(memory: PhysicalMemory, bv: BioVec, what: string): number {
  if (!Number.isSafeInteger(bv.page) || bv.page < 0) throw invalid(`${what}.page`, bv.page, "a page frame number (a non-negative integer)");
  if (!Number.isSafeInteger(bv.offset) || bv.offset < 0) throw invalid(`${what}.offset`, bv.offset, "a non-negative integer byte offset");
  if (!Number.isSafeInteger(bv.len) || bv.len <= 0 || bv.len > 0xffffffff) throw invalid(`${what}.len`, bv.len, "a length from 1 to 2^32 - 1 bytes");
  const start = bv.page * PAGE_SIZE + bv.offset;
  if (!Number.isSafeInteger(start + bv.len)) throw invalid(`${what}.offset`, bv.offset, "a range that ends below 2^53");
  const pages = memory.pages;
  const first = Math.floor(start / PAGE_SIZE);
  const last = Math.floor((start + bv.len - 1) / PAGE_SIZE);
  let owner = -1;
  for (let pfn = first; pfn <= last; pfn++) {
    if (!pages.hasPage(pfn)) {
      const where = pfn === first ? "starts" : "runs";
      throw new BioError("no-page", `${what} (phys ${hex(start)}, len ${bv.len}) ${where} on page ${hex(pfn * PAGE_SIZE)}, which has no struct page: only RAM and ZONE_DEVICE (P2P) pages can carry block I/O`);
    }
    const flags = pages.flags(pfn);
    if ((flags & PageFlag.DEVICE_PRIVATE) !== 0) {
      throw new BioError("no-page", `${what} touches device-private page ${hex(pfn * PAGE_SIZE)}: it cannot be addressed by DMA (migrate it to system memory first)`);
    }
    const o = (flags & PageFlag.P2PDMA) !== 0 ? pages.owner(pfn) : 0;
    if (owner === -1) owner = o;
    else if (o !== owner) {
      throw new BioError("crosses-owner", `${what} (phys ${hex(start)}, len ${bv.len}) starts in ${kind(owner)} and crosses into page ${hex(pfn * PAGE_SIZE)} of ${kind(o)}: a bvec only covers pages of one kind`);
    }
  }
  return owner;
}

/**
 * struct bvec_iter: a position inside a bio's bvec table (bi_size bytes left, bvec index, bytes of that
 * bvec already consumed). Mutable and reused, so iteration allocates nothing.
 */
export class BvecIter {
  /** bi_size: bytes left. */
  size: number;
  /** bi_idx. */
  idx = 0;
  /** bi_bvec_done. */
  bvecDone = 0;

  constructor(bio: Bio) {
    this.size = bio.size;
  }

  /** Length of mp_bvec_iter_bvec: the rest of the current bvec, bounded by bytes left. */
  mpLen(vecs: readonly BioVec[]): number {
    const bv = vecs[this.idx];
    return bv === undefined ? 0 : Math.min(this.size, bv.len - this.bvecDone);
  }

  /** Physical address of the current position, or -1 past the last bvec. */
  phys(vecs: readonly BioVec[]): PhysAddr | -1 {
    const bv = vecs[this.idx];
    return bv === undefined ? -1 : ((bv.page * PAGE_SIZE + bv.offset + this.bvecDone) as PhysAddr);
  }

  /** The current bvec from the current position, cut at a `split`-byte boundary (bvec_iter_bvec). */
  bvec(vecs: readonly BioVec[], split: number): BioVec {
    const phys = this.phys(vecs);
    const len = Math.min(this.mpLen(vecs), split - (phys % split));
    return bvecAt(phys as PhysAddr, len);
  }

  /** bvec_iter_advance_single / bvec_iter_advance. */
  advance(vecs: readonly BioVec[], bytes: number): void {
    this.size -= bytes;
    let done = this.bvecDone + bytes;
    let bv = vecs[this.idx];
    while (bv !== undefined && done >= bv.len) {
      done -= bv.len;
      this.idx++;
      bv = vecs[this.idx];
    }
    this.bvecDone = done;
  }
}
