export {
  IB_ACCESS_HUGETLB,
  IB_ACCESS_LOCAL_WRITE,
  IB_ACCESS_MW_BIND,
  IB_ACCESS_ON_DEMAND,
  IB_ACCESS_RELAXED_ORDERING,
  IB_ACCESS_REMOTE_ATOMIC,
  IB_ACCESS_REMOTE_READ,
  IB_ACCESS_REMOTE_WRITE,
  IB_ACCESS_SUPPORTED,
  IB_ACCESS_WRITABLE,
  IB_ACCESS_ZERO_BASED,
  IB_IMPLICIT_ODP_LENGTH,
  IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH,
  IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_NO_FAULT,
  IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_WRITE,
  IB_UVERBS_ADVISE_MR_FLAG_FLUSH,
  IbWcOpcode,
  IbWcStatus,
  IbWrOpcode,
  MLX5_IB_MTT_READ,
  MLX5_IB_MTT_WRITE,
  MLX5_IB_UPD_XLT_ATOMIC,
  MLX5_IB_UPD_XLT_DOWNGRADE,
  MLX5_IB_UPD_XLT_ENABLE,
  MLX5_IB_UPD_XLT_ZAP,
  MLX5_IMR_MTT_SIZE,
  MLX5_PF_FLAGS_DOWNGRADE,
  MLX5_PF_FLAGS_ENABLE,
  MLX5_PF_FLAGS_SNAPSHOT,
  RdmaErrno,
  ibWcStatusName,
} from "./constants.js";
export { RdmaInputError, RdmaStateError } from "./errors.js";
export { RdmaCounter } from "./counters.js";
export { DEFAULT_RDMA_COSTS } from "./costs.js";
export type { RdmaCosts } from "./costs.js";
export type { IbUmemOdp } from "./umem-odp.js";
export {
  ibUmemOdpAllocChild,
  ibUmemOdpAllocImplicit,
  ibUmemOdpGet,
  ibUmemOdpMapDmaAndLock,
  ibUmemOdpRelease,
  ibUmemOdpUnmapDmaPages,
} from "./umem-odp.js";
export type { UmemOdpOptions } from "./umem-odp.js";
// IbPd, IbMr, IbCq, IbQp, IbUmemOdp and IbUmemMixed are made by the verbs (allocPd, regMr, ibCreateCq, …):
// exported as types, so their constructors are not part of the API.
export type { IbMr, IbPd } from "./mr.js";
export type { IbUmemMixedHooks, IbUmemPinned } from "./mr.js";
export { mlx5IbAdviseMr, mlx5IbInitOdpMr, mlx5IbInvalidateRange, mlx5rUmrUpdateXlt, pagefaultMr, pagefaultRealMr } from "./odp.js";
export type { IbAdviseSge } from "./odp.js";
export { Mlx5Nic, NicAccess, NicAccessResult } from "./nic.js";
export type { Mlx5NicOptions, OdpDmaStrategy } from "./nic.js";
export { compareOdpDmaStrategy, odpComparisonTable } from "./compare.js";
export { mmapHodgepodge } from "./hodgepodge.js";
export type { HodgepodgeKind, HodgepodgeLayout, HodgepodgeOptions, HodgepodgeSegment } from "./hodgepodge.js";
export type { OdpComparisonRow } from "./compare.js";
export type { IbCq, IbQp } from "./verbs.js";
export { IbQpState, ibConnectQp, ibCreateCq, ibCreateQp, ibPollCq, ibPostRecv, ibPostSend } from "./verbs.js";
export type { IbRecvWr, IbSendWr, IbSge, IbWc } from "./verbs.js";
export { RdmaDmabufCounter } from "./dmabuf-counters.js";
export {
  IbUmemDmabuf,
  ibUmemDmabufDmaBlocks,
  ibUmemDmabufGet,
  ibUmemDmabufGetPinned,
  ibUmemDmabufGetPinnedRevocableAndLock,
  ibUmemDmabufMapPages,
  ibUmemDmabufRelease,
  ibUmemDmabufRevoke,
  ibUmemDmabufSetRevokeLocked,
  ibUmemDmabufUnmapPages,
} from "./umem-dmabuf.js";
export type { UmemDmabufKind, UmemDmabufMapping, UmemDmabufOptions } from "./umem-dmabuf.js";
export { mlx5IbDmabufInvalidateCb, mlx5IbInitDmabufMr, mlx5IbRegUserMrDmabuf, mlx5rUmrUpdateMrPas, pagefaultDmabufMr } from "./dmabuf-mr.js";
export type { RegDmabufMrOptions } from "./dmabuf-mr.js";
export type { IbUmemMixed } from "./mixed-mr.js";
export { ibUmemMixedOf, regMixedMr } from "./mixed-mr.js";
export type { MixedDmabufSegment, MixedMrOptions, MixedSegment, MixedSegmentBase, MixedSegmentSpec, MixedVaSegment } from "./mixed-mr.js";
export { MixedEventLog } from "./mixed-events.js";
export type { MixedEvent, MixedSourceLatency } from "./mixed-events.js";
