export { IovaDomain, orderBase2 } from "./domain.js";
export type { IovaDomainOptions, IovaRange } from "./domain.js";
export { FlushQueue } from "./flush-queue.js";
export type { FlushQueueOps, FlushQueueOptions } from "./flush-queue.js";
export { iommuDmaAllocIova, iommuDmaFreeIova, iovaAlign } from "./dma-iova.js";
export type { IommuDmaCookie, IommuDmaDeviceState, IommuIotlbGather } from "./dma-iova.js";
export { IovaError } from "./errors.js";
export type { IovaErrorCode } from "./errors.js";
export {
  DMA_BIT_MASK_32,
  FAIL_IOVA,
  IOVA_DEPOT_DELAY_NS,
  IOVA_FQ_SIZE,
  IOVA_FQ_TIMEOUT_NS,
  IOVA_MAG_SIZE,
  IOVA_RANGE_CACHE_MAX_SIZE,
} from "./constants.js";
