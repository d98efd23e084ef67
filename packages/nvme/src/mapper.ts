import { DMA_ATTR_MMIO, DMA_ATTR_NO_WARN, DmaIovaState, Errno, dmaNeedUnmap, dmaUnmapPhys, unsafeDmaAddr } from "@dmasim/dma";
import type { DmaDevice } from "@dmasim/dma";
import {
  BLK_STS_OK,
  BLK_STS_RESOURCE,
  BLK_STS_TARGET,
  BlkDmaIter,
  BlkMapIter,
  blkMapIterNext,
  blkRqDmaMapCoalesce,
  blkRqDmaMapIterNext,
  blkRqDmaMapIterStart,
  blkRqDmaUnmap,
  blkRqMapIterInit,
  rqDmaDir,
} from "@dmasim/bio";
import type { BlkStatus, Request } from "@dmasim/bio";
import { PciP2pdmaMapType } from "@dmasim/pcie-p2p";
import { dmaMapSg, dmaMapSgtable, dmaUnmapSg, dmaUnmapSgtable, sgAllocTable, sgDmaAddress, sgDmaLen, sgFreeTable, sgSetPhys } from "@dmasim/scatterlist";
import type { SgTable } from "@dmasim/scatterlist";
import { NvmeInputError, NvmeStateError } from "./errors.js";

/**
 * How a driver turns a request into DMA segments. `start` maps and yields the first segment in
 * addr/len, `next` the following ones; both return false at the end or on error (status tells).
 */
export interface SegmentMapper {
  readonly name: string;
  addr: number;
  len: number;
  status: BlkStatus;
  start(tag: number, rq: Request): boolean;
  next(tag: number, rq: Request): boolean;
  /** The whole request is one DMA segment (an inline SGL data descriptor suffices). */
  coalesced(tag: number): boolean;
  /** The DMA segments the request was mapped into, as nvme_pci_avg_seg_size counts them when not coalesced. */
  segments(tag: number, rq: Request): number;
  /** The P2P map type decided for the tag's request. */
  p2pMap(tag: number): PciP2pdmaMapType;
  /** Undoes the mapping of the tag's request (`mappedLen` bytes were handed to the device). */
  unmap(tag: number, rq: Request, mappedLen: number): void;
}

/**
 * The 6.17+ NVMe way: blk_rq_dma_map_iter_start/next, no scatterlist. Segment addresses are kept only
 * when dma_need_unmap says they will be needed (iod->dma_vecs); a coalesced IOVA needs none.
 */
export class IteratorMapper implements SegmentMapper {
  readonly name = "iterator";
  addr = 0;
  len = 0;
  status: BlkStatus = BLK_STS_OK;
  readonly #dev: DmaDevice;
  readonly #states: DmaIovaState[] = [];
  readonly #iters: BlkDmaIter[] = [];
  readonly #maxSegs: number;
  readonly #vecAddr: Float64Array;
  readonly #vecLen: Float64Array;
  readonly #nvecs: Int32Array;

  constructor(dev: DmaDevice, tags: number, maxSegs: number) {
    this.#dev = dev;
    this.#maxSegs = maxSegs;
    for (let i = 0; i < tags; i++) {
      this.#states.push(new DmaIovaState());
      this.#iters.push(new BlkDmaIter());
    }
    this.#vecAddr = new Float64Array(tags * maxSegs);
    this.#vecLen = new Float64Array(tags * maxSegs);
    this.#nvecs = new Int32Array(tags);
  }

  #state(tag: number): DmaIovaState {
    const s = this.#states[tag];
    if (s === undefined) throw new NvmeInputError("IteratorMapper", "tag", tag, "a tag below the queue depth");
    return s;
  }

  #iter(tag: number): BlkDmaIter {
    const it = this.#iters[tag];
    if (it === undefined) throw new NvmeInputError("IteratorMapper", "tag", tag, "a tag below the queue depth");
    return it;
  }

  #save(tag: number, it: BlkDmaIter): void {
    this.addr = it.addr;
    this.len = it.len;
    if (it.p2pdma.map === PciP2pdmaMapType.BUS_ADDR || blkRqDmaMapCoalesce(this.#state(tag)) || !dmaNeedUnmap(this.#dev)) return;
    const n = this.#nvecs[tag] ?? 0;
    if (n >= this.#maxSegs) throw new NvmeStateError("EINVAL", `tag ${tag}: more than ${this.#maxSegs} segments`);
    this.#vecAddr[tag * this.#maxSegs + n] = it.addr;
    this.#vecLen[tag * this.#maxSegs + n] = it.len;
    this.#nvecs[tag] = n + 1;
  }

  start(tag: number, rq: Request): boolean {
    const it = this.#iter(tag);
    this.#nvecs[tag] = 0;
    const ok = blkRqDmaMapIterStart(rq, this.#dev, this.#state(tag), it);
    this.status = it.status;
    if (ok) this.#save(tag, it);
    return ok;
  }

  next(tag: number, rq: Request): boolean {
    const it = this.#iter(tag);
    const ok = blkRqDmaMapIterNext(rq, this.#dev, this.#state(tag), it);
    this.status = it.status;
    if (ok) this.#save(tag, it);
    return ok;
  }

  coalesced(tag: number): boolean {
    return blkRqDmaMapCoalesce(this.#state(tag));
  }

  /** blk_rq_nr_phys_segments: each physical segment is one DMA segment when the IOVA path did not coalesce. */
  segments(_tag: number, rq: Request): number {
    return rq.nrPhysSegments;
  }

  p2pMap(tag: number): PciP2pdmaMapType {
    return this.#iter(tag).p2pdma.map;
  }

  /** nvme_unmap_data. */
  unmap(tag: number, rq: Request, mappedLen: number): void {
    const map = this.p2pMap(tag);
    if (blkRqDmaUnmap(rq, this.#dev, this.#state(tag), mappedLen, map)) return;
    const attrs = map === PciP2pdmaMapType.THRU_HOST_BRIDGE ? DMA_ATTR_MMIO : 0;
    const n = this.#nvecs[tag] ?? 0;
    for (let i = 0; i < n; i++) {
      dmaUnmapPhys(this.#dev, unsafeDmaAddr(this.#vecAddr[tag * this.#maxSegs + i] ?? 0), this.#vecLen[tag * this.#maxSegs + i] ?? 0, rqDmaDir(rq), attrs);
    }
    this.#nvecs[tag] = 0;
  }
}

/**
 * The scatterlist-era driver: per request, blk_rq_map_sg into a freshly allocated sg table, dma_map_sg,
 * walk the DMA segments; on completion dma_unmap_sg and free the table. `impl` picks upstream's
 * iommu_dma_map_sg ("classic") or dmasim's rebuild of dma_map_sg on the two-step API ("two-step").
 */
export class ScatterlistMapper implements SegmentMapper {
  readonly name: string;
  addr = 0;
  len = 0;
  status: BlkStatus = BLK_STS_OK;
  readonly #dev: DmaDevice;
  readonly #impl: "classic" | "two-step";
  readonly #tables: (SgTable | undefined)[];
  readonly #pos: Int32Array;
  readonly #cpuNents: Int32Array;
  readonly #dmaNents: Int32Array;
  readonly #map = new BlkMapIter();

  constructor(dev: DmaDevice, tags: number, impl: "classic" | "two-step") {
    this.#dev = dev;
    this.#impl = impl;
    this.name = `scatterlist (${impl} dma_map_sg)`;
    this.#tables = new Array<SgTable | undefined>(tags).fill(undefined);
    this.#pos = new Int32Array(tags);
    this.#cpuNents = new Int32Array(tags);
    this.#dmaNents = new Int32Array(tags);
  }

  #table(tag: number): SgTable {
    const t = this.#tables[tag];
    if (t === undefined) throw new NvmeStateError("EINVAL", `tag ${tag} holds no sg table`);
    return t;
  }

  start(tag: number, rq: Request): boolean {
    // blk_rq_map_sg (the iterator's phys-vec walk, written into struct scatterlist entries) into a table of nr_phys_segments entries; contiguous bvecs merge, so it may fill fewer.
    const table = sgAllocTable(this.#dev.kernel.trace, rq.nrPhysSegments);
    blkRqMapIterInit(rq, this.#map);
    let n = 0;
    while (blkMapIterNext(rq, this.#map)) sgSetPhys(table, n++, this.#map.paddr, this.#map.len);
    // nvme_map_data (scatterlist era): dma_map_sgtable(..., DMA_ATTR_NO_WARN) over the orig_nents entries
    // blk_rq_map_sg filled; -EREMOTEIO (P2P memory the device cannot reach) completes the request with
    // BLK_STS_TARGET, any other failure is a resource shortage. (When fewer entries were filled than the
    // table has, the model maps them with dma_map_sg, which reports a failure as 0 without its errno.)
    let rc: number;
    let count: number;
    if (n === table.origNents) {
      rc = dmaMapSgtable(this.#dev, table, rqDmaDir(rq), DMA_ATTR_NO_WARN, { impl: this.#impl });
      count = table.nents;
    } else {
      count = dmaMapSg(this.#dev, table, n, rqDmaDir(rq), DMA_ATTR_NO_WARN, { impl: this.#impl });
      rc = count > 0 ? 0 : -Errno.ENOMEM;
    }
    if (rc !== 0) {
      sgFreeTable(table);
      this.status = rc === -Errno.EREMOTEIO ? BLK_STS_TARGET : BLK_STS_RESOURCE;
      return false;
    }
    this.#tables[tag] = table;
    this.#pos[tag] = 0;
    this.#cpuNents[tag] = n;
    this.#dmaNents[tag] = count;
    this.status = BLK_STS_OK;
    return this.#at(tag, table);
  }

  #at(tag: number, table: SgTable): boolean {
    const i = this.#pos[tag] ?? 0;
    if (i >= (this.#dmaNents[tag] ?? 0)) return false;
    this.addr = sgDmaAddress(table, i);
    this.len = sgDmaLen(table, i);
    this.#pos[tag] = i + 1;
    return true;
  }

  next(tag: number): boolean {
    this.status = BLK_STS_OK;
    return this.#at(tag, this.#table(tag));
  }

  coalesced(tag: number): boolean {
    return this.#dmaNents[tag] === 1;
  }

  /** The mapped count dma_map_sgtable returned in nents. */
  segments(tag: number): number {
    return this.#dmaNents[tag] ?? 1;
  }

  p2pMap(): PciP2pdmaMapType {
    return PciP2pdmaMapType.NONE;
  }

  unmap(tag: number, rq: Request): void {
    const table = this.#table(tag);
    const n = this.#cpuNents[tag] ?? 0;
    if (n === table.origNents) dmaUnmapSgtable(this.#dev, table, rqDmaDir(rq));
    else dmaUnmapSg(this.#dev, table, n, rqDmaDir(rq));
    sgFreeTable(table);
    this.#tables[tag] = undefined;
  }
}
