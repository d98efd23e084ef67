import {
  BLK_STS_AGAIN,
  BLK_STS_DEV_RESOURCE,
  BLK_STS_IOERR,
  BLK_STS_OK,
  BLK_STS_RESOURCE,
  ReqOp,
  queueLimits,
  reqPhysGapIntersects,
  rqDmaDir,
} from "@dmasim/bio";
import type { BlkStatus, QueueLimits, Request } from "@dmasim/bio";
import { DMA_BIT_MASK, DmaDirection, dmaAllocCoherent, dmaMapPhys, dmaMappingError, dmaOptMappingSize, dmaSetMaskAndCoherent, dmaSetMaxSegSize, dmaSetMinAlignMask, dmaUnmapPhys, unsafeDmaAddr } from "@dmasim/dma";
import type { DmaCoherentBuffer, DmaDevice, DmaKernel } from "@dmasim/dma";
import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import type { PhysicalMemory } from "@dmasim/memory";
import type { NvmeController } from "./controller.js";
import { DmaPool } from "./dma-pool.js";
import { IteratorMapper, ScatterlistMapper } from "./mapper.js";
import type { SegmentMapper } from "./mapper.js";
import {
  NVME_CQE_BYTES,
  NVME_CTRL_PAGE_SIZE,
  NVME_PRPS_PER_PAGE,
  NVME_SGL_DESC_BYTES,
  NVME_SQE_BYTES,
  NvmeOpcode,
  NvmePsdt,
  NvmeSglType,
  cqHeadDoorbell,
  emptyCommand,
  encodeSqe,
  getU64,
  setU64,
  sqTailDoorbell,
} from "./nvme-defs.js";
import { NvmeInputError, NvmeStateError } from "./errors.js";
import type { NvmeDmabufMap, NvmeDmabufToken } from "./dmabuf-token.js";
import { kGetMap, kPutMap } from "./internal.js";

/** NVME_SMALL_POOL_SIZE: descriptor lists up to 256 bytes come from the small pool. */
export const NVME_SMALL_POOL_SIZE = 256;
/** NVME_MAX_SEGS: the data SGL entries of one descriptor page (4096 / 16); the most segments a request may have. */
export const NVME_MAX_SEGS = NVME_CTRL_PAGE_SIZE / NVME_SGL_DESC_BYTES;
/** NVME_MAX_BYTES: the driver's own cap on one request, 8 MiB (before MDTS and dma_opt_mapping_size). */
export const NVME_MAX_BYTES = 8 * 1024 * 1024;

/** enum nvme_use_sgl: what nvme_pci_use_sgls says about a request. */
const SGL_UNSUPPORTED = 0;
const SGL_SUPPORTED = 1;
const SGL_FORCED = 2;
type UseSgl = typeof SGL_UNSUPPORTED | typeof SGL_SUPPORTED | typeof SGL_FORCED;
/** Most descriptor pages one request may chain (a 2 MiB PRP transfer needs 2). */
const MAX_DESCRIPTORS = 8;

/** How the driver turns a request into DMA segments: the block-layer DMA iterator (blk_rq_dma_map_iter_start), or a scatterlist mapped with dma_map_sgtable the classic way or the two-step IOVA way. */
export type MappingStyle = "iterator" | "sg-classic" | "sg-two-step";

/** Driver tunables: queue depth, SGL threshold, mapping style. */
export interface NvmeDriverOptions {
  /** Commands in flight (the submission queue has one more slot). Default 64. */
  readonly queueDepth?: number;
  /** sgl_threshold module parameter: use SGLs when the average segment is at least this big; 0 = never unless forced. Default 32 KiB. */
  readonly sglThreshold?: number;
  /** How requests become DMA segments; default the block-layer iterator. */
  readonly mapping?: MappingStyle;
}

/** What a completion reports to the submitter. */
export interface NvmeCompletion {
  /** The request that completed. */
  readonly rq: Request;
  /** The block status the request completes with (nvme_error_status). */
  readonly status: BlkStatus;
  /** The controller's status field (0 = success). */
  readonly nvmeStatus: number;
  /** Whether the command carried an SGL (else PRPs). */
  readonly sgl: boolean;
}

/** A read or write of a registered dma-buf (a bio of the BIO_DMABUF_MAP kind): where on the drive, where in the buffer, how much. */
export interface NvmeDmabufRq {
  /** ReqOp.READ (the drive writes into the buffer) or ReqOp.WRITE (the drive reads the buffer). */
  readonly op: ReqOp;
  /** Where the I/O starts on the namespace, in 512-byte sectors. */
  readonly sector: number;
  /** Byte offset into the buffer (bi_bvec_done): a multiple of 4 (the queue's dma_alignment). */
  readonly offset: number;
  /** Bytes: a multiple of the LBA size, at most max_hw_sectors. */
  readonly len: number;
}

/** What a completion of a dma-buf request reports. */
export interface NvmeDmabufCompletion {
  /** The token the request went through. */
  readonly token: NvmeDmabufToken;
  /** The request. */
  readonly rq: NvmeDmabufRq;
  /** The block status it completes with. */
  readonly status: BlkStatus;
  /** The controller's status field (0 = success). */
  readonly nvmeStatus: number;
}

/** A dma-buf request in flight: its token, the mapping it holds and what was asked. */
interface DmabufInFlight {
  readonly token: NvmeDmabufToken;
  readonly map: NvmeDmabufMap;
  readonly rq: NvmeDmabufRq;
}

/**
 * The NVMe PCI driver's I/O path (drivers/nvme/host/pci.c): nvme_queue_rq → nvme_map_data (PRPs or SGLs
 * from the DMA iterator) → SQ entry + doorbell; nvme_poll → completion → nvme_unmap_data. One I/O queue.
 */
export class NvmeDriver {
  /** The drive as the DMA layer knows it (its struct device). */
  readonly dev: DmaDevice;
  /** The DMA mapping layer. */
  readonly kernel: DmaKernel;
  /** The drive this driver talks to. */
  readonly controller: NvmeController;
  /** The queue limits the driver sets (nvme_set_queue_limits): what a request may look like. */
  readonly limits: QueueLimits;
  /** Commands in flight at most. */
  readonly queueDepth: number;
  /** Average segment size from which SGLs are used instead of PRPs (0: never unless forced). */
  readonly sglThreshold: number;
  /** Turns requests into DMA segments, in the configured MappingStyle. */
  readonly mapper: SegmentMapper;
  /** simpleCommands: requests nvme_pci_setup_data_simple mapped with one dma_map_bvec (also counted as PRP or SGL). */
  readonly stats = { submitted: 0, completed: 0, prpCommands: 0, sglCommands: 0, simpleCommands: 0, prpLists: 0, sglLists: 0, mapErrors: 0 };
  readonly #mem: PhysicalMemory;
  readonly #sq: DmaCoherentBuffer;
  readonly #cq: DmaCoherentBuffer;
  readonly #depth: number;
  #sqTail = 0;
  #cqHead = 0;
  #phase = 1;
  readonly #small: DmaPool;
  readonly #large: DmaPool;
  readonly #freeTags: Int32Array;
  #nfree: number;
  readonly #rqs: (Request | undefined)[];
  readonly #dmabufRqs: (DmabufInFlight | undefined)[];
  readonly #totalLen: Float64Array;
  readonly #sgl: Uint8Array;
  /** IOD_SINGLE_SEGMENT: the tag's data was mapped by nvme_pci_setup_data_simple, at #singleAddr. */
  readonly #single: Uint8Array;
  readonly #singleAddr: Float64Array;
  /** Descriptor blocks per tag: pool (0 small, 1 large) * 2^24 + block. */
  readonly #desc: Float64Array;
  readonly #ndesc: Int32Array;
  readonly #cmd = emptyCommand();
  readonly #sqe = new Uint8Array(NVME_SQE_BYTES);
  readonly #sqeView = new DataView(this.#sqe.buffer);
  readonly #cqe = new Uint8Array(NVME_CQE_BYTES);
  readonly #cqeView = new DataView(this.#cqe.buffer);
  readonly #list = new Uint8Array(NVME_CTRL_PAGE_SIZE);
  readonly #listView = new DataView(this.#list.buffer);
  readonly #reg = new Uint8Array(4);
  readonly #regView = new DataView(this.#reg.buffer);

  constructor(kernel: DmaKernel, controller: NvmeController, options: NvmeDriverOptions = {}) {
    const qd = options.queueDepth ?? 64;
    if (!Number.isInteger(qd) || qd < 1 || qd > 4095) throw new NvmeInputError("NvmeDriver", "queueDepth", qd, "1 to 4095");
    const threshold = options.sglThreshold ?? 32768;
    if (!Number.isSafeInteger(threshold) || threshold < 0) throw new NvmeInputError("NvmeDriver", "sglThreshold", threshold, "a byte count >= 0");
    this.kernel = kernel;
    this.controller = controller;
    this.queueDepth = qd;
    this.sglThreshold = threshold;
    this.#mem = kernel.memory;
    const dev = kernel.device(controller.endpoint.bdf);
    this.dev = dev;
    // nvme_pci_alloc_dev: no segment limit, and swiotlb must keep the offset inside a controller page
    // because PRPs cannot express anything else. The largest request is capped at dma_opt_mapping_size()
    // (128 KiB behind iommu-dma: larger IOVAs miss the range caches) and, at identify, at the MDTS.
    dmaSetMinAlignMask(dev, NVME_CTRL_PAGE_SIZE - 1);
    dmaSetMaxSegSize(dev, 0xffffffff);
    const maxHwSectors = Math.floor(Math.min(NVME_MAX_BYTES, dmaOptMappingSize(dev), controller.maxTransfer) / 512);
    // nvme_pci_enable: 64-bit DMA (after the limit above, as in the kernel).
    dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64));
    // nvme_set_ctrl_limits: max_segments = min(NVME_MAX_SEGS, nvme_max_drv_segments()), one segment per
    // controller page of the largest request plus one for an unaligned start. SGL-capable controllers need
    // no virtual boundary (gaps go to SGLs).
    this.limits = queueLimits({
      logicalBlockSize: controller.lbaSize,
      maxSectors: maxHwSectors,
      maxSegments: Math.min(NVME_MAX_SEGS, Math.floor(maxHwSectors / (NVME_CTRL_PAGE_SIZE / 512)) + 1),
      maxSegmentSize: 0xffffffff,
      virtBoundaryMask: controller.sglSupported ? 0 : NVME_CTRL_PAGE_SIZE - 1,
      dmaAlignment: 3,
    });
    this.#depth = qd + 1;
    const sq = dmaAllocCoherent(dev, this.#depth * NVME_SQE_BYTES);
    const cq = dmaAllocCoherent(dev, this.#depth * NVME_CQE_BYTES);
    if (sq === undefined || cq === undefined) throw new NvmeStateError("ENOMEM", "nvme: no coherent memory for the I/O queues");
    this.#sq = sq;
    this.#cq = cq;
    controller.createIoQueuePair(1, sq.dmaHandle, cq.dmaHandle, this.#depth);
    this.#small = new DmaPool(dev, NVME_SMALL_POOL_SIZE);
    this.#large = new DmaPool(dev, NVME_CTRL_PAGE_SIZE);
    this.#freeTags = new Int32Array(qd);
    for (let i = 0; i < qd; i++) this.#freeTags[i] = qd - 1 - i;
    this.#nfree = qd;
    this.#rqs = new Array<Request | undefined>(qd).fill(undefined);
    this.#dmabufRqs = new Array<DmabufInFlight | undefined>(qd).fill(undefined);
    this.#totalLen = new Float64Array(qd);
    this.#sgl = new Uint8Array(qd);
    this.#single = new Uint8Array(qd);
    this.#singleAddr = new Float64Array(qd);
    this.#desc = new Float64Array(qd * MAX_DESCRIPTORS);
    this.#ndesc = new Int32Array(qd);
    const mapping = options.mapping ?? "iterator";
    this.mapper =
      mapping === "iterator" ? new IteratorMapper(dev, qd, this.limits.maxSegments) : new ScatterlistMapper(dev, qd, mapping === "sg-classic" ? "classic" : "two-step");
  }

  /** Commands submitted and not yet completed. */
  get inFlight(): number {
    return this.queueDepth - this.#nfree;
  }

  /**
   * nvme_queue_rq: map the request, write its command into the submission queue and ring the doorbell.
   * Returns BLK_STS_OK, BLK_STS_DEV_RESOURCE when every tag is busy, or the mapping's status.
   */
  queueRq(rq: Request): BlkStatus {
    if (this.#nfree === 0) return BLK_STS_DEV_RESOURCE;
    const tag = this.#freeTags[--this.#nfree] ?? 0;
    this.#totalLen[tag] = 0;
    this.#ndesc[tag] = 0;
    const cmd = this.#cmd;
    cmd.opcode = rq.op === ReqOp.WRITE ? NvmeOpcode.WRITE : NvmeOpcode.READ;
    cmd.cid = tag;
    cmd.nsid = 1;
    cmd.slba = (rq.sector * 512) / this.controller.lbaSize;
    cmd.nlb = rq.dataLen / this.controller.lbaSize - 1;
    const status = this.#mapData(tag, rq);
    if (status !== BLK_STS_OK) {
      this.stats.mapErrors++;
      this.#freeTag(tag);
      return status;
    }
    this.#rqs[tag] = rq;
    encodeSqe(this.#sqeView, 0, cmd);
    this.#mem.write(unsafePhysAddr(this.#sq.cpuAddr + this.#sqTail * NVME_SQE_BYTES), this.#sqe);
    this.#sqTail = (this.#sqTail + 1) % this.#depth;
    this.#writeReg(sqTailDoorbell(1), this.#sqTail);
    this.stats.submitted++;
    return BLK_STS_OK;
  }

  /**
   * nvme_queue_rq of a request on a registered dma-buf (BIO_DMABUF_MAP in the 2026 dmabuf-token series):
   * blk_rq_assign_dma_map takes the token's mapping, mapping the buffer when it has none (a failure ends
   * the request with BLK_STS_RESOURCE, as the series does; the errno is in `token.stats.lastError`);
   * nvme_rq_setup_dmabuf_map builds PRPs from the mapping's per-page DMA addresses (PRP1 at the offset,
   * PRP2 or a PRP list); SQ entry and doorbell. Returns BLK_STS_OK, BLK_STS_DEV_RESOURCE when every tag is
   * busy, or the failure. Bad input (another driver's or a released token, a range outside the buffer, a
   * length the queue limits refuse) throws NvmeInputError before anything changes.
   */
  queueDmabufRq(token: NvmeDmabufToken, rq: NvmeDmabufRq): BlkStatus {
    const fn = "nvme_queue_rq";
    if (typeof token !== "object" || (token as unknown) === null || token.driver !== this) throw new NvmeInputError(fn, "token", token, "a dma-buf token of this driver (NvmeDmabufToken.create)");
    if (token.released) throw new NvmeInputError(fn, "token", "released", "a token that was not released");
    if ((rq as unknown) === null || typeof (rq as unknown) !== "object") throw new NvmeInputError(fn, "rq", rq, "{ op, sector, offset, len }");
    if ((rq.op as number) !== ReqOp.READ && (rq.op as number) !== ReqOp.WRITE) throw new NvmeInputError(fn, "rq.op", rq.op, "ReqOp.READ or ReqOp.WRITE");
    if (!Number.isSafeInteger(rq.sector) || rq.sector < 0) throw new NvmeInputError(fn, "rq.sector", rq.sector, "a sector >= 0");
    // The buffer was registered for one direction (token->dir): a read fills it, a write drains it.
    const need = rq.op === ReqOp.READ ? DmaDirection.FROM_DEVICE : DmaDirection.TO_DEVICE;
    if (token.dir !== DmaDirection.BIDIRECTIONAL && token.dir !== need) throw new NvmeInputError(fn, "rq.op", rq.op, `an op the token's direction allows (${rq.op === ReqOp.READ ? "a READ needs FROM_DEVICE" : "a WRITE needs TO_DEVICE"} or BIDIRECTIONAL)`);
    const lba = this.controller.lbaSize;
    const maxBytes = this.limits.maxSectors * 512;
    if (!Number.isSafeInteger(rq.len) || rq.len <= 0 || rq.len % lba !== 0 || rq.len > maxBytes) throw new NvmeInputError(fn, "rq.len", rq.len, `a multiple of ${lba} bytes, at most ${maxBytes} (max_hw_sectors)`);
    if ((rq.sector * 512) % lba !== 0) throw new NvmeInputError(fn, "rq.sector", rq.sector, `a sector on an LBA boundary (${lba} bytes)`);
    if (!Number.isSafeInteger(rq.offset) || rq.offset < 0 || rq.offset % 4 !== 0 || rq.offset + rq.len > token.dmabuf.size) {
      throw new NvmeInputError(fn, "rq.offset", rq.offset, `a multiple of 4 with offset + len inside the buffer (${token.dmabuf.size} bytes)`);
    }
    if (this.#nfree === 0) return BLK_STS_DEV_RESOURCE;
    const map = token[kGetMap]();
    if (typeof map === "number") {
      this.stats.mapErrors++;
      return BLK_STS_RESOURCE;
    }
    const tag = this.#freeTags[--this.#nfree] ?? 0;
    this.#totalLen[tag] = rq.len;
    this.#ndesc[tag] = 0;
    this.#single[tag] = 0;
    this.#sgl[tag] = 0;
    const cmd = this.#cmd;
    cmd.opcode = rq.op === ReqOp.WRITE ? NvmeOpcode.WRITE : NvmeOpcode.READ;
    cmd.cid = tag;
    cmd.nsid = 1;
    cmd.slba = (rq.sector * 512) / lba;
    cmd.nlb = rq.len / lba - 1;
    const status = this.#setupDmabufMap(tag, map, rq.offset, rq.len);
    if (status !== BLK_STS_OK) {
      token[kPutMap](map);
      this.stats.mapErrors++;
      this.#freeTag(tag);
      return status;
    }
    this.stats.prpCommands++;
    this.#dmabufRqs[tag] = { token, map, rq };
    encodeSqe(this.#sqeView, 0, cmd);
    this.#mem.write(unsafePhysAddr(this.#sq.cpuAddr + this.#sqTail * NVME_SQE_BYTES), this.#sqe);
    this.#sqTail = (this.#sqTail + 1) % this.#depth;
    this.#writeReg(sqTailDoorbell(1), this.#sqTail);
    this.stats.submitted++;
    return BLK_STS_OK;
  }

  /**
   * nvme_rq_setup_dmabuf_map: PRP1 is the page of `offset` plus the offset into it; PRP2 the next page, or
   * a PRP list of the following pages (chained when a list page fills), all from the mapping's dma_list.
   */
  #setupDmabufMap(tag: number, map: NvmeDmabufMap, offset: number, len: number): BlkStatus {
    const P = NVME_CTRL_PAGE_SIZE;
    const list = map.dmaList;
    const cmd = this.#cmd;
    cmd.psdt = NvmePsdt.PRP;
    let idx = Math.floor(offset / P);
    const inPage = offset % P;
    cmd.prp1 = (list[idx++] ?? 0) + inPage;
    cmd.prp2 = 0;
    let length = len - (P - inPage);
    if (length <= 0) return BLK_STS_OK;
    if (length <= P) {
      cmd.prp2 = list[idx] ?? 0;
      return BLK_STS_OK;
    }
    let d = this.#allocDesc(tag, Math.ceil(length / P) * 8);
    if (d < 0) return BLK_STS_RESOURCE;
    cmd.prp2 = this.#descDma(d);
    this.stats.prpLists++;
    const view = this.#listView;
    let i = 0;
    for (;;) {
      if (i === NVME_PRPS_PER_PAGE) {
        d = this.#chainPrpList(tag, d, i);
        if (d < 0) return BLK_STS_RESOURCE;
        i = 1;
      }
      setU64(view, 8 * i++, list[idx++] ?? 0);
      length -= P;
      if (length <= 0) break;
    }
    this.#mem.write(unsafePhysAddr(this.#descCpu(d)), this.#list.subarray(0, i * 8));
    return BLK_STS_OK;
  }

  #writeReg(offset: number, value: number): void {
    this.#regView.setUint32(0, value, true);
    this.#mem.write(unsafePhysAddr(this.controller.bar0.phys + offset), this.#reg);
  }

  #freeTag(tag: number): void {
    const n = this.#ndesc[tag] ?? 0;
    for (let i = 0; i < n; i++) {
      const d = this.#desc[tag * MAX_DESCRIPTORS + i] ?? 0;
      const pool = d >= 2 ** 24 ? this.#large : this.#small;
      pool.free(d % 2 ** 24);
    }
    this.#ndesc[tag] = 0;
    this.#freeTags[this.#nfree++] = tag;
  }

  /**
   * nvme_pci_use_sgls: SGLs are unsupported on a controller without them; forced when a gap inside a
   * controller page makes the request inexpressible as PRPs; otherwise supported, left to the threshold.
   */
  #useSgls(rq: Request): UseSgl {
    if (!this.controller.sglSupported) return SGL_UNSUPPORTED;
    if (reqPhysGapIntersects(rq, NVME_CTRL_PAGE_SIZE - 1)) return SGL_FORCED;
    return SGL_SUPPORTED;
  }

  /**
   * nvme_pci_avg_seg_size: bytes per DMA segment. A request the IOVA path coalesced into one range is one
   * segment; otherwise the iterator's physical segments, or the scatterlist's mapped entries.
   */
  #avgSegSize(tag: number, rq: Request): number {
    const m = this.mapper;
    const nseg = m.coalesced(tag) ? 1 : m.segments(tag, rq);
    return Math.ceil(rq.dataLen / nseg);
  }

  /**
   * nvme_map_data (6.17+): a single-segment request goes to nvme_pci_setup_data_simple unless that says
   * BLK_STS_AGAIN; otherwise the DMA iterator maps it and the SGL-vs-PRP choice is made on its DMA segments.
   */
  #mapData(tag: number, rq: Request): BlkStatus {
    const useSgl = this.#useSgls(rq);
    this.#single[tag] = 0;
    if (this.mapper.name === "iterator" && rq.nrPhysSegments === 1) {
      const st = this.#setupDataSimple(tag, rq, useSgl);
      if (st !== BLK_STS_AGAIN) return st;
    }
    const m = this.mapper;
    if (!m.start(tag, rq)) return m.status;
    const sgl = useSgl === SGL_FORCED || (useSgl === SGL_SUPPORTED && this.sglThreshold !== 0 && this.#avgSegSize(tag, rq) >= this.sglThreshold);
    this.#sgl[tag] = sgl ? 1 : 0;
    const status = sgl ? this.#setupSgl(tag, rq) : this.#setupPrp(tag, rq);
    if (status !== BLK_STS_OK) m.unmap(tag, rq, this.#totalLen[tag] ?? 0);
    else if (sgl) this.stats.sglCommands++;
    else this.stats.prpCommands++;
    return status;
  }

  /**
   * nvme_pci_setup_data_simple: one bvec mapped with dma_map_bvec, no iterator and no descriptor list —
   * PRP1 (+ PRP2) when the data spans at most two controller pages, else (or when SGLs are forced) one
   * inline SGL data descriptor. BLK_STS_AGAIN sends the request to the iterator: PRPs impossible and SGLs
   * unsupported, or P2P memory (which needs the P2P-aware path).
   */
  #setupDataSimple(tag: number, rq: Request, useSgl: UseSgl): BlkStatus {
    const P = NVME_CTRL_PAGE_SIZE;
    const bv = rq.bios[0]?.vecs[0];
    // req_bvec: the request's one segment is its first bvec (the model also takes the iterator when
    // several contiguous bvecs make up the one segment).
    if (bv?.len !== rq.dataLen || rq.p2pOwner !== 0) return BLK_STS_AGAIN;
    const phys = bv.page * PAGE_SIZE + bv.offset;
    const prp1Offset = phys % P;
    const prpPossible = prp1Offset + bv.len <= 2 * P;
    if (useSgl === SGL_UNSUPPORTED && !prpPossible) return BLK_STS_AGAIN;
    const addr = dmaMapPhys(this.dev, unsafePhysAddr(phys), bv.len, rqDmaDir(rq), 0);
    if (dmaMappingError(this.dev, addr) !== 0) return BLK_STS_RESOURCE;
    this.#single[tag] = 1;
    this.#singleAddr[tag] = addr;
    this.#totalLen[tag] = bv.len;
    const cmd = this.#cmd;
    if (useSgl === SGL_FORCED || !prpPossible) {
      cmd.psdt = NvmePsdt.SGL_MPTR_CONTIG;
      cmd.sglAddr = addr;
      cmd.sglLen = bv.len;
      cmd.sglType = NvmeSglType.DATA_BLOCK;
      this.#sgl[tag] = 1;
      this.stats.sglCommands++;
    } else {
      cmd.psdt = NvmePsdt.PRP;
      cmd.prp1 = addr;
      const firstPrpLen = P - prp1Offset;
      cmd.prp2 = bv.len > firstPrpLen ? addr + firstPrpLen : 0;
      this.#sgl[tag] = 0;
      this.stats.prpCommands++;
    }
    this.stats.simpleCommands++;
    return BLK_STS_OK;
  }

  /** nvme_unmap_data: IOD_SINGLE_SEGMENT is one dma_unmap_page; everything else the mapper undoes. */
  #unmapData(tag: number, rq: Request): void {
    if (this.#single[tag] === 1) {
      dmaUnmapPhys(this.dev, unsafeDmaAddr(this.#singleAddr[tag] ?? 0), this.#totalLen[tag] ?? 0, rqDmaDir(rq), 0);
      this.#single[tag] = 0;
      return;
    }
    this.mapper.unmap(tag, rq, this.#totalLen[tag] ?? 0);
  }

  /**
   * A full PRP list page (nvme_pci_setup_prps): its last slot becomes the pointer to a new list page, and
   * the entry it held moves to the new page's first slot; the full page is written out. Returns the new
   * descriptor, or -1 when the pool has none left.
   */
  #chainPrpList(tag: number, d: number, i: number): number {
    const next = this.#allocDesc(tag, NVME_CTRL_PAGE_SIZE);
    if (next < 0) return -1;
    this.stats.prpLists++;
    const view = this.#listView;
    const moved = getU64(view, 8 * (i - 1));
    setU64(view, 8 * (i - 1), this.#descDma(next));
    this.#mem.write(unsafePhysAddr(this.#descCpu(d)), this.#list);
    setU64(view, 0, moved);
    return next;
  }

  #allocDesc(tag: number, bytes: number): number {
    const n = this.#ndesc[tag] ?? 0;
    if (n === MAX_DESCRIPTORS) return -1;
    const large = bytes > NVME_SMALL_POOL_SIZE;
    const pool = large ? this.#large : this.#small;
    const block = pool.alloc();
    if (block < 0) return -1;
    this.#desc[tag * MAX_DESCRIPTORS + n] = (large ? 2 ** 24 : 0) + block;
    this.#ndesc[tag] = n + 1;
    return (large ? 2 ** 24 : 0) + block;
  }

  #descCpu(d: number): number {
    return d >= 2 ** 24 ? this.#large.cpuAddr(d % 2 ** 24) : this.#small.cpuAddr(d);
  }

  #descDma(d: number): number {
    return d >= 2 ** 24 ? this.#large.dmaAddr(d % 2 ** 24) : this.#small.dmaAddr(d);
  }

  /**
   * nvme_pci_setup_data_prp: PRP1 is the first (possibly unaligned) address; PRP2 the second page or a
   * PRP list; a full list page's last slot moves to the next page and becomes the chain pointer.
   */
  #setupPrp(tag: number, rq: Request): BlkStatus {
    const P = NVME_CTRL_PAGE_SIZE;
    const m = this.mapper;
    const cmd = this.#cmd;
    cmd.psdt = NvmePsdt.PRP;
    let length = rq.dataLen;
    let addr = m.addr;
    let segLeft = m.len;
    const first = Math.min(length, P - (addr % P));
    if (segLeft < first) return BLK_STS_IOERR; // a short first segment would leave a hole PRPs cannot express
    cmd.prp1 = addr;
    cmd.prp2 = 0;
    this.#totalLen[tag] = first;
    length -= first;
    addr += first;
    segLeft -= first;
    if (length === 0) return BLK_STS_OK;
    // Step to the next segment when this one is used up; it must start on a controller page.
    const advance = (): BlkStatus => {
      if (segLeft > 0) return BLK_STS_OK;
      if (!m.next(tag, rq)) return m.status !== BLK_STS_OK ? m.status : BLK_STS_IOERR;
      addr = m.addr;
      segLeft = m.len;
      return addr % P === 0 ? BLK_STS_OK : BLK_STS_IOERR;
    };
    let st = advance();
    if (st !== BLK_STS_OK) return st;
    if (length <= P) {
      cmd.prp2 = addr;
      this.#totalLen[tag] = (this.#totalLen[tag] ?? 0) + length;
      return BLK_STS_OK;
    }
    const nprps = Math.ceil(length / P);
    let d = this.#allocDesc(tag, nprps * 8);
    if (d < 0) return BLK_STS_RESOURCE;
    cmd.prp2 = this.#descDma(d);
    this.stats.prpLists++;
    const view = this.#listView;
    let i = 0;
    for (;;) {
      if (i === NVME_PRPS_PER_PAGE) {
        d = this.#chainPrpList(tag, d, i);
        if (d < 0) return BLK_STS_RESOURCE;
        i = 1;
      }
      setU64(view, 8 * i++, addr);
      const prpLen = Math.min(length, P);
      if (segLeft < prpLen) return BLK_STS_IOERR;
      this.#totalLen[tag] = (this.#totalLen[tag] ?? 0) + prpLen;
      addr += prpLen;
      segLeft -= prpLen;
      length -= prpLen;
      if (length === 0) break;
      st = advance();
      if (st !== BLK_STS_OK) return st;
    }
    this.#mem.write(unsafePhysAddr(this.#descCpu(d)), this.#list.subarray(0, i * 8));
    return BLK_STS_OK;
  }

  /**
   * nvme_pci_setup_data_sgl: a coalesced (or single-segment) request is one data descriptor inline in the
   * command; otherwise a last-segment descriptor points at a list of data descriptors.
   */
  #setupSgl(tag: number, rq: Request): BlkStatus {
    const m = this.mapper;
    const cmd = this.#cmd;
    cmd.psdt = NvmePsdt.SGL_MPTR_CONTIG;
    const entries = rq.nrPhysSegments;
    if (m.coalesced(tag) || entries === 1) {
      cmd.sglAddr = m.addr;
      cmd.sglLen = m.len;
      cmd.sglType = NvmeSglType.DATA_BLOCK;
      this.#totalLen[tag] = m.len;
      return BLK_STS_OK;
    }
    const d = this.#allocDesc(tag, entries * NVME_SGL_DESC_BYTES);
    if (d < 0) return BLK_STS_RESOURCE;
    this.stats.sglLists++;
    const view = this.#listView;
    let mapped = 0;
    let total = 0;
    do {
      if (mapped === entries) return BLK_STS_IOERR;
      const at = mapped++ * NVME_SGL_DESC_BYTES;
      setU64(view, at, m.addr);
      view.setUint32(at + 8, m.len, true);
      view.setUint32(at + 12, 0, true);
      view.setUint8(at + 15, NvmeSglType.DATA_BLOCK << 4);
      total += m.len;
      this.#totalLen[tag] = total;
    } while (m.next(tag, rq));
    if (m.status !== BLK_STS_OK) return m.status;
    this.#mem.write(unsafePhysAddr(this.#descCpu(d)), this.#list.subarray(0, mapped * NVME_SGL_DESC_BYTES));
    cmd.sglAddr = this.#descDma(d);
    cmd.sglLen = mapped * NVME_SGL_DESC_BYTES;
    cmd.sglType = NvmeSglType.LAST_SEGMENT;
    return BLK_STS_OK;
  }

  /**
   * nvme_poll / nvme_process_cq: consume completion entries whose phase matches, unmap and free each
   * request (nvme_unmap_data), update the CQ head doorbell. Requests on a registered dma-buf complete
   * through `onDmabufComplete`. Returns the number of completions.
   */
  poll(onComplete: (c: NvmeCompletion) => void, onDmabufComplete?: (c: NvmeDmabufCompletion) => void): number {
    let n = 0;
    for (;;) {
      this.#mem.readInto(unsafePhysAddr(this.#cq.cpuAddr + this.#cqHead * NVME_CQE_BYTES), this.#cqe);
      const dw3 = this.#cqeView.getUint32(12, true);
      if (((dw3 >>> 16) & 1) !== this.#phase) break;
      const tag = dw3 & 0xffff;
      const nvmeStatus = (dw3 >>> 17) & 0x7fff;
      const drq = this.#dmabufRqs[tag];
      if (drq !== undefined) {
        // nvme_rq_clean_dmabuf_map: free the PRP lists; blk_rq_drop_dma_map: put the mapping.
        this.#dmabufRqs[tag] = undefined;
        drq.token[kPutMap](drq.map);
        this.#freeTag(tag);
        this.#advanceCq();
        n++;
        this.stats.completed++;
        onDmabufComplete?.({ token: drq.token, rq: drq.rq, status: nvmeStatus === 0 ? BLK_STS_OK : BLK_STS_IOERR, nvmeStatus });
        continue;
      }
      const rq = this.#rqs[tag];
      if (rq === undefined) throw new NvmeStateError("EIO", `nvme: completion for tag ${tag}, which is not in flight`);
      this.#unmapData(tag, rq);
      const sgl = this.#sgl[tag] === 1;
      this.#rqs[tag] = undefined;
      this.#freeTag(tag);
      this.#advanceCq();
      n++;
      this.stats.completed++;
      onComplete({ rq, status: nvmeStatus === 0 ? BLK_STS_OK : BLK_STS_IOERR, nvmeStatus, sgl });
    }
    if (n > 0) this.#writeReg(cqHeadDoorbell(1), this.#cqHead);
    return n;
  }

  #advanceCq(): void {
    this.#cqHead++;
    if (this.#cqHead === this.#depth) {
      this.#cqHead = 0;
      this.#phase ^= 1;
    }
  }
}
