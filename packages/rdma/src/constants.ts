import { pickErrno } from "@dmasim/trace";
/** enum ib_access_flags (include/rdma/ib_verbs.h), the bits an MR registration accepts. */
export const IB_ACCESS_LOCAL_WRITE = 1 << 0;
/** Peers may RDMA WRITE into the MR; the umem is mapped for device writes. */
export const IB_ACCESS_REMOTE_WRITE = 1 << 1;
/** Peers may RDMA READ from the MR. */
export const IB_ACCESS_REMOTE_READ = 1 << 2;
/** Peers may run atomics (compare-and-swap, fetch-and-add) on the MR; needs device writes. */
export const IB_ACCESS_REMOTE_ATOMIC = 1 << 3;
/** Memory windows may be bound to the MR; not supported by the model's NIC (registration refuses it). */
export const IB_ACCESS_MW_BIND = 1 << 4;
/** The MR's addresses start at 0 rather than at its user address; not supported by the model's NIC. */
export const IB_ACCESS_ZERO_BASED = 1 << 5;
/** On-demand paging: nothing is pinned at registration; the NIC faults pages in (pagefault_mr) when it meets them. */
export const IB_ACCESS_ON_DEMAND = 1 << 6;
/** ODP over huge pages (with IB_ACCESS_ON_DEMAND only): 2 MiB umem pages, address and length 2 MiB aligned. */
export const IB_ACCESS_HUGETLB = 1 << 7;
/** The NIC may reorder its PCIe writes to the MR; accepted, no effect in the model. */
export const IB_ACCESS_RELAXED_ORDERING = 1 << 20;
/** The access bits the model's NIC supports; anything else is refused (ib_check_mr_access: -EINVAL). */
export const IB_ACCESS_SUPPORTED =
  IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ | IB_ACCESS_REMOTE_ATOMIC | IB_ACCESS_ON_DEMAND | IB_ACCESS_HUGETLB | IB_ACCESS_RELAXED_ORDERING;
/** ib_access_writable: the umem is mapped for device writes. */
export const IB_ACCESS_WRITABLE = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_ATOMIC | IB_ACCESS_MW_BIND;

/** ibv_reg_mr(pd, NULL, SIZE_MAX, IBV_ACCESS_ON_DEMAND): the length that asks for an implicit ODP MR (start 0). */
export const IB_IMPLICIT_ODP_LENGTH = Number.MAX_SAFE_INTEGER;

/** enum ib_wc_status, in kernel order. */
export const IbWcStatus = {
  SUCCESS: 0,
  LOC_LEN_ERR: 1,
  LOC_QP_OP_ERR: 2,
  LOC_EEC_OP_ERR: 3,
  LOC_PROT_ERR: 4,
  WR_FLUSH_ERR: 5,
  MW_BIND_ERR: 6,
  BAD_RESP_ERR: 7,
  LOC_ACCESS_ERR: 8,
  REM_INV_REQ_ERR: 9,
  REM_ACCESS_ERR: 10,
  REM_OP_ERR: 11,
  RETRY_EXC_ERR: 12,
  RNR_RETRY_EXC_ERR: 13,
  LOC_RDD_VIOL_ERR: 14,
  REM_INV_RD_REQ_ERR: 15,
  REM_ABORT_ERR: 16,
  INV_EECN_ERR: 17,
  INV_EEC_STATE_ERR: 18,
  FATAL_ERR: 19,
  RESP_TIMEOUT_ERR: 20,
  GENERAL_ERR: 21,
} as const;
export type IbWcStatus = (typeof IbWcStatus)[keyof typeof IbWcStatus];
const WC_STATUS_NAMES = Object.keys(IbWcStatus);
/** ib_wc_status_msg, short form: the enum name without IB_WC_. */
export function ibWcStatusName(s: number): string {
  return WC_STATUS_NAMES[s] ?? `status ${s}`;
}

/** enum ib_wr_opcode (the ones the model executes). */
export const IbWrOpcode = {
  RDMA_WRITE: 0,
  SEND: 2,
  RDMA_READ: 4,
  ATOMIC_CMP_AND_SWP: 5,
  ATOMIC_FETCH_AND_ADD: 6,
} as const;
export type IbWrOpcode = (typeof IbWrOpcode)[keyof typeof IbWrOpcode];

/** enum ib_wc_opcode (the ones the model completes). */
export const IbWcOpcode = {
  SEND: 0,
  RDMA_WRITE: 1,
  RDMA_READ: 2,
  COMP_SWAP: 3,
  FETCH_ADD: 4,
  RECV: 1 << 7,
} as const;
export type IbWcOpcode = (typeof IbWcOpcode)[keyof typeof IbWcOpcode];

/** enum ib_uverbs_advise_mr_advice and the FLUSH flag (synchronous prefetch). */
export const IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH = 0;
/** Prefetch the ranges writable (pagefault_mr without DOWNGRADE). */
export const IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_WRITE = 1;
/** Map only what is present now, faulting nothing in (pagefault_mr with SNAPSHOT). */
export const IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_NO_FAULT = 2;
/** Run the prefetch before ibv_advise_mr returns, reporting its first error, instead of on the NIC's workqueue. */
export const IB_UVERBS_ADVISE_MR_FLAG_FLUSH = 1;

/** MTT entry permission bits (mlx5_ib MLX5_IB_MTT_READ / _WRITE): an entry is dma_addr | bits; 0 = no access. */
export const MLX5_IB_MTT_READ = 1 << 0;
/** The MTT entry allows device writes. */
export const MLX5_IB_MTT_WRITE = 1 << 1;
export const MLX5_IB_MTT_PRESENT = MLX5_IB_MTT_READ | MLX5_IB_MTT_WRITE;

/** MLX5_IB_UPD_XLT_* flags of mlx5r_umr_update_xlt. */
export const MLX5_IB_UPD_XLT_ZAP = 1 << 0;
/** Enable the mkey once the translation is written; kept for reference (the model sets `IbMr.enabled` directly). */
export const MLX5_IB_UPD_XLT_ENABLE = 1 << 1;
/** The update runs in atomic context (allocations may not sleep); kept for reference, no effect in the model. */
export const MLX5_IB_UPD_XLT_ATOMIC = 1 << 2;
export const MLX5_IB_UPD_XLT_ADDR = 1 << 3;
export const MLX5_IB_UPD_XLT_PD = 1 << 4;
export const MLX5_IB_UPD_XLT_ACCESS = 1 << 5;
export const MLX5_IB_UPD_XLT_INDIRECT = 1 << 6;
/**
 * Write entries read-only even for writable pages; kept for reference (the model's fault path takes
 * MLX5_PF_FLAGS_DOWNGRADE).
 */
export const MLX5_IB_UPD_XLT_DOWNGRADE = 1 << 7;

/** pagefault_mr flags. */
export const MLX5_PF_FLAGS_DOWNGRADE = 1 << 1;
/**
 * Take what hmm_range_fault finds present without faulting anything in (prefetch NO_FAULT, registration prefetch).
 */
export const MLX5_PF_FLAGS_SNAPSHOT = 1 << 2;
/** Enable the mkey once its MTT is populated (the prefetch at registration). */
export const MLX5_PF_FLAGS_ENABLE = 1 << 3;

/** MLX5_IMR_MTT_SIZE: the span of one implicit ODP child MR (1 GiB). */
export const MLX5_IMR_MTT_SIZE = 2 ** 30;

/** The errnos this package returns (negated), as the kernel's values. */
export const RdmaErrno = pickErrno("EPERM", "ENOENT", "EAGAIN", "ENOMEM", "EFAULT", "EBUSY", "EINVAL", "EOVERFLOW", "EOPNOTSUPP");
