export { Bio, BvecIter, ReqOp, bvecAt, bvecPhys } from "./bio.js";
export type { BioOptions, BioVec } from "./bio.js";
export { BioError, BioInputError } from "./errors.js";
export type { BioErrorReason } from "./errors.js";
export {
  BLK_DEF_MAX_SECTORS_CAP,
  BLK_MAX_SEGMENTS,
  BLK_MAX_SEGMENT_SIZE,
  BLK_SEG_BOUNDARY_MASK,
  SECTOR_SHIFT,
  SECTOR_SIZE,
  getMaxSegmentSize,
  queueLimits,
} from "./limits.js";
export type { QueueLimits } from "./limits.js";
export { Request, blkRqNrPhysSegments, blkRqPayloadBytes, reqPhysGapIntersects, rqDmaDir } from "./request.js";
export { BlkMapIter, blkMapIterNext, blkRqMapIterInit } from "./map-iter.js";
export {
  BLK_DMA_ITER_BYTES,
  BlkDmaIter,
  DMA_VEC_BYTES,
  blkRqDmaMapCoalesce,
  blkRqDmaMapIterNext,
  blkRqDmaMapIterStart,
  blkRqDmaUnmap,
} from "./dma-iter.js";
export {
  BlkStatus,
  BLK_STS_AGAIN,
  BLK_STS_DEV_RESOURCE,
  BLK_STS_DM_REQUEUE,
  BLK_STS_DURATION_LIMIT,
  BLK_STS_INVAL,
  BLK_STS_IOERR,
  BLK_STS_MEDIUM,
  BLK_STS_NOSPC,
  BLK_STS_NOTSUPP,
  BLK_STS_OFFLINE,
  BLK_STS_OK,
  BLK_STS_PROTECTION,
  BLK_STS_RESOURCE,
  BLK_STS_RESV_CONFLICT,
  BLK_STS_TARGET,
  BLK_STS_TIMEOUT,
  BLK_STS_TRANSPORT,
  BLK_STS_ZONE_ACTIVE_RESOURCE,
  BLK_STS_ZONE_OPEN_RESOURCE,
  blkStatusName,
  blkStatusToErrno,
  blkStatusToStr,
  errnoToBlkStatus,
} from "./status.js";
