import {
  DMA_IOVA_STATE_BYTES,
  DmaDevice,
  DmaIovaState,
  DMA_ATTR_MMIO,
  PciP2pdmaMapState,
  dmaGetMergeBoundary,
  dmaIovaDestroy,
  dmaIovaLink,
  dmaIovaSize,
  dmaIovaSync,
  dmaIovaTryAlloc,
  dmaMapPhys,
  dmaMappingError,
  dmaNeedUnmap,
  dmaUseIova,
  pciP2pdmaBusAddrMap,
  pciP2pdmaState,
} from "@dmasim/dma";
import { dmaApiSlice } from "@dmasim/dma/internal";
import type { DmaAddr } from "@dmasim/dma";
import { PciP2pdmaMapType } from "@dmasim/pcie-p2p";
import { Counter } from "@dmasim/dma";
import { invalid } from "./errors.js";
import { BlkMapIter, blkMapIterNext, blkRqMapIterInit } from "./map-iter.js";
import { kMapIter, kSetDmaBookkeeping } from "./internal.js";
import { checkRequest, reqPhysGapIntersects, rqDmaDir } from "./request.js";
import type { Request } from "./request.js";
import { BLK_STS_INVAL, BLK_STS_OK, BLK_STS_RESOURCE, errnoToBlkStatus } from "./status.js";
import type { BlkStatus } from "./status.js";

/**
 * Bytes of per-request DMA bookkeeping, as laid out on a 64-bit kernel: struct blk_dma_iter (addr, len,
 * pci_p2pdma_map_state, status, blk_map_iter with its bvec_iter and two pointers) is 88 bytes; struct
 * dma_iova_state is 16; a driver that must unmap segment by segment keeps one struct dma_vec (address +
 * length, 16 with padding) per segment — what the IOVA path saves.
 */
export const BLK_DMA_ITER_BYTES = 88;
/** sizeof(struct dma_vec): what a driver keeps per segment to unmap it later (see BLK_DMA_ITER_BYTES). */
export const DMA_VEC_BYTES = 16;

/**
 * struct blk_dma_iter: the output of one step (addr, len), the P2P state decided from the first segment,
 * and the status when a step returned false. Its walk over the bio vectors is private to the
 * blkRqDmaMapIter* functions.
 */
export class BlkDmaIter {
  /** The DMA address of the segment the last step produced. */
  addr = 0 as DmaAddr;
  /** Bytes in the segment the last step produced. */
  len = 0;
  /** pci_p2pdma_map_state: how P2P memory in the request is reached, decided from its first segment. */
  readonly p2pdma = new PciP2pdmaMapState();
  /** Valid only after blkRqDmaMapIterStart/Next returned false. */
  status: BlkStatus = BLK_STS_OK;
  /** Package-private (keyed by a symbol `.` does not export): the walk over the bio vectors, blk_dma_iter's `iter`. */
  readonly [kMapIter] = new BlkMapIter();
}

const MAP_TYPES: readonly number[] = Object.values(PciP2pdmaMapType);

function check(fn: string, rq: unknown, dev: unknown, state: unknown, iter?: unknown): void {
  checkRequest(fn, rq);
  if (!(dev instanceof DmaDevice)) throw invalid(`${fn}: dma_dev`, dev, "a DmaDevice from kernel.device(bdf)");
  // Before anything is charged or mapped: an unbound device would otherwise fail half-way inside the DMA layer.
  if (!dev.bound) throw invalid(`${fn}: dma_dev`, dev.bdf, "a bound device: this one was unbound; look it up again with kernel.device()");
  if (!(state instanceof DmaIovaState)) throw invalid(`${fn}: state`, state, "a DmaIovaState");
  if (iter !== undefined && !(iter instanceof BlkDmaIter)) throw invalid(`${fn}: iter`, iter, "a BlkDmaIter");
}

function charge(rq: Request, dev: DmaDevice, bytes: number): void {
  rq[kSetDmaBookkeeping](rq.dmaBookkeeping + bytes);
  dev.kernel.trace.counters.add(Counter.DmaBookkeepingBytesAllocated, bytes);
}

function release(rq: Request, dev: DmaDevice): void {
  if (rq.dmaBookkeeping === 0) return;
  dev.kernel.trace.counters.add(Counter.DmaBookkeepingBytesFreed, rq.dmaBookkeeping);
  rq[kSetDmaBookkeeping](0);
}

function zeroState(state: DmaIovaState): void {
  state.addr = 0 as DmaAddr;
  state.size = 0;
  state.useSwiotlb = false;
}

/** blk_can_dma_map_iova: every gap between segments is aligned to the IOMMU merge boundary. */
function blkCanDmaMapIova(rq: Request, dev: DmaDevice): boolean {
  return !reqPhysGapIntersects(rq, dmaGetMergeBoundary(dev));
}

/** blk_dma_map_bus: a peer reached through a switch uses the provider's bus address; nothing to map. */
function blkDmaMapBus(iter: BlkDmaIter): boolean {
  const provider = iter.p2pdma.mem;
  if (provider === undefined) throw new Error("blk_dma_map_bus without a P2P provider (internal error)");
  iter.addr = pciP2pdmaBusAddrMap(provider, iter[kMapIter].paddr);
  iter.len = iter[kMapIter].len;
  return true;
}

/** blk_dma_map_direct: one dma_map_phys per phys vec (MMIO attributes for a peer behind the host bridge). */
function blkDmaMapDirect(rq: Request, dev: DmaDevice, iter: BlkDmaIter): boolean {
  const attrs = iter.p2pdma.map === PciP2pdmaMapType.THRU_HOST_BRIDGE ? DMA_ATTR_MMIO : 0;
  const addr = dmaMapPhys(dev, iter[kMapIter].paddr, iter[kMapIter].len, rqDmaDir(rq), attrs);
  if (dmaMappingError(dev, addr) !== 0) {
    iter.status = BLK_STS_RESOURCE;
    return false;
  }
  iter.addr = addr;
  iter.len = iter[kMapIter].len;
  // The caller must remember this segment to unmap it (NVMe's iod->dma_vecs).
  if (dmaNeedUnmap(dev)) charge(rq, dev, DMA_VEC_BYTES);
  return true;
}

/**
 * blk_rq_dma_map_iova: link every phys vec at increasing offsets of one IOVA, then sync once; the
 * iterator returns the whole request as one segment. Unlike upstream 6.17, a failing link is not
 * overwritten by the sync that follows: the partial IOVA is destroyed and the link's error reported.
 */
function blkRqDmaMapIova(rq: Request, dev: DmaDevice, state: DmaIovaState, iter: BlkDmaIter): boolean {
  const dir = rqDmaDir(rq);
  const attrs = iter.p2pdma.map === PciP2pdmaMapType.THRU_HOST_BRIDGE ? DMA_ATTR_MMIO : 0;
  const walk = iter[kMapIter];
  let mapped = 0;
  let error = 0;
  do {
    error = dmaIovaLink(dev, state, walk.paddr, mapped, walk.len, dir, attrs);
    if (error !== 0) break;
    mapped += walk.len;
  } while (blkMapIterNext(rq, walk));
  if (error === 0) error = dmaIovaSync(dev, state, 0, mapped);
  if (error !== 0) {
    // Unlinks [0, mapped) — each link undoes its own partial work — and frees the IOVA.
    dmaIovaDestroy(dev, state, mapped, dir, attrs);
    zeroState(state);
    iter.status = errnoToBlkStatus(error);
    return false;
  }
  iter.addr = state.addr;
  iter.len = dmaIovaSize(state);
  return true;
}

/**
 * blk_rq_dma_map_iter_start: map the first DMA segment of `rq` for `dev`. Returns false when nothing was
 * mapped (iter.status tells why: BLK_STS_INVAL for P2P memory the device cannot reach, BLK_STS_RESOURCE
 * when a mapping failed, the link's status when coalescing failed). On true, iter.addr/iter.len hold the
 * segment; blkRqDmaMapCoalesce(state) says whether it is the whole request.
 */
export function blkRqDmaMapIterStart(rq: Request, dev: DmaDevice, state: DmaIovaState, iter: BlkDmaIter): boolean {
  const fn = "blk_rq_dma_map_iter_start";
  check(fn, rq, dev, state, iter);
  return dmaApiSlice(dev, fn, () => mapIterStart(rq, dev, state, iter));
}

function mapIterStart(rq: Request, dev: DmaDevice, state: DmaIovaState, iter: BlkDmaIter): boolean {
  blkRqMapIterInit(rq, iter[kMapIter]);
  charge(rq, dev, BLK_DMA_ITER_BYTES + DMA_IOVA_STATE_BYTES);
  iter.p2pdma.mem = undefined;
  iter.p2pdma.map = PciP2pdmaMapType.NONE;
  iter.status = BLK_STS_OK;
  iter.addr = 0 as DmaAddr;
  iter.len = 0;
  if (!blkMapIterNext(rq, iter[kMapIter])) return fail(rq, dev);
  // P2P is decided once, from the first segment: a request never mixes kinds.
  switch (pciP2pdmaState(iter.p2pdma, dev, iter[kMapIter].paddr)) {
    case PciP2pdmaMapType.BUS_ADDR:
      return blkDmaMapBus(iter);
    case PciP2pdmaMapType.THRU_HOST_BRIDGE:
    case PciP2pdmaMapType.NONE:
      break;
    default:
      iter.status = BLK_STS_INVAL;
      return fail(rq, dev);
  }
  if (blkCanDmaMapIova(rq, dev) && dmaIovaTryAlloc(dev, state, iter[kMapIter].paddr, rq.dataLen)) {
    return blkRqDmaMapIova(rq, dev, state, iter) || fail(rq, dev);
  }
  zeroState(state);
  return blkDmaMapDirect(rq, dev, iter) || fail(rq, dev);
}

/** Nothing is mapped after a failed start: the bookkeeping goes at once. */
function fail(rq: Request, dev: DmaDevice): false {
  release(rq, dev);
  return false;
}

/**
 * blk_rq_dma_map_iter_next: map the next segment. Returns false at the end (iter.status BLK_STS_OK) or on
 * error (BLK_STS_RESOURCE); after a coalesced start there is no next segment.
 */
export function blkRqDmaMapIterNext(rq: Request, dev: DmaDevice, state: DmaIovaState, iter: BlkDmaIter): boolean {
  const fn = "blk_rq_dma_map_iter_next";
  check(fn, rq, dev, state, iter);
  return dmaApiSlice(dev, fn, () => mapIterNext(rq, dev, iter));
}

function mapIterNext(rq: Request, dev: DmaDevice, iter: BlkDmaIter): boolean {
  iter.status = BLK_STS_OK;
  if (!blkMapIterNext(rq, iter[kMapIter])) return false;
  if (iter.p2pdma.map === PciP2pdmaMapType.BUS_ADDR) return blkDmaMapBus(iter);
  return blkDmaMapDirect(rq, dev, iter);
}

/** blk_rq_dma_map_coalesce: did blkRqDmaMapIterStart map the whole request as one IOVA range? */
export function blkRqDmaMapCoalesce(state: DmaIovaState): boolean {
  return dmaUseIova(state);
}

/**
 * blk_rq_dma_unmap: true when nothing is left for the caller to do (bus addresses; an IOVA, destroyed
 * here; or a device that needs no unmap), false when the caller must dma_unmap_phys every segment it
 * mapped. Either way the request's DMA bookkeeping is released here.
 */
export function blkRqDmaUnmap(rq: Request, dev: DmaDevice, state: DmaIovaState, mappedLen: number, map: PciP2pdmaMapType): boolean {
  const fn = "blk_rq_dma_unmap";
  check(fn, rq, dev, state);
  if (!Number.isSafeInteger(mappedLen) || mappedLen < 0) throw invalid(`${fn}: mapped_len`, mappedLen, "a non-negative byte count");
  if (!MAP_TYPES.includes(map)) throw invalid(`${fn}: map`, map, "a PciP2pdmaMapType");
  return dmaApiSlice(dev, fn, () => rqDmaUnmap(rq, dev, state, mappedLen, map));
}

function rqDmaUnmap(rq: Request, dev: DmaDevice, state: DmaIovaState, mappedLen: number, map: PciP2pdmaMapType): boolean {
  release(rq, dev);
  if (map === PciP2pdmaMapType.BUS_ADDR) return true;
  if (dmaUseIova(state)) {
    const attrs = map === PciP2pdmaMapType.THRU_HOST_BRIDGE ? DMA_ATTR_MMIO : 0;
    dmaIovaDestroy(dev, state, mappedLen, rqDmaDir(rq), attrs);
    zeroState(state);
    return true;
  }
  return !dmaNeedUnmap(dev);
}
