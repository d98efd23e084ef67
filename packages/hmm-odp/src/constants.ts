import { pickErrno } from "@dmasim/trace";
/**
 * HMM pfn flags. The kernel keeps flags and the map order in the top 11 bits of an `unsigned long` whose
 * low bits are the pfn (include/linux/hmm.h). dmasim keeps the pfn and the flags in two typed arrays; the
 * flag word is the kernel word shifted right by 48, so every bit keeps its kernel meaning and order.
 * Code uses only these names, never literals, so a layout change (a 2026 proposal adds a bit) costs nothing.
 */
export const HMM_PFN_VALID = 1 << 15;
/** HMM_PFN_WRITE: the CPU page table allows writes, so the device may write too. */
export const HMM_PFN_WRITE = 1 << 14;
/** HMM_PFN_ERROR: the address cannot be mirrored (no VMA, a failed fault, a special mapping). */
export const HMM_PFN_ERROR = 1 << 13;
/** Sticky: the entry is DMA-mapped (set and cleared by hmm_dma_map_pfn / hmm_dma_unmap_pfn). */
export const HMM_PFN_DMA_MAPPED = 1 << 12;
/** Sticky: a P2P page mapped through the host bridge (DMA_ATTR_MMIO at unmap). */
export const HMM_PFN_P2PDMA = 1 << 11;
/** Sticky: a P2P page addressed by its bus address (nothing to unmap). */
export const HMM_PFN_P2PDMA_BUS = 1 << 10;
/** The 5-bit map order field starts here (kernel bit 53). */
export const HMM_PFN_ORDER_SHIFT = 5;
/** HMM_PFN_ORDER_MASK: width of the map-order field (see hmmPfnToMapOrder). */
export const HMM_PFN_ORDER_MASK = 0x1f;
/** Input: fault the page in (same bit as VALID). */
export const HMM_PFN_REQ_FAULT = HMM_PFN_VALID;
/** Input: fault it in writable (same bit as WRITE; only with REQ_FAULT). */
export const HMM_PFN_REQ_WRITE = HMM_PFN_WRITE;
/** Every flag bit (HMM_PFN_FLAGS). */
export const HMM_PFN_FLAGS = 0xffff;
/** The bits every output write preserves (HMM_PFN_INOUT_FLAGS in mm/hmm.c). */
export const HMM_PFN_INOUT_FLAGS = HMM_PFN_DMA_MAPPED | HMM_PFN_P2PDMA | HMM_PFN_P2PDMA_BUS;
/** Defined flag bits: anything else in a request is refused as bad input. */
export const HMM_PFN_DEFINED = HMM_PFN_VALID | HMM_PFN_WRITE | HMM_PFN_ERROR | HMM_PFN_INOUT_FLAGS | (HMM_PFN_ORDER_MASK << HMM_PFN_ORDER_SHIFT);

/** hmm_pfn_to_map_order. */
export function hmmPfnToMapOrder(flags: number): number {
  return (flags >>> HMM_PFN_ORDER_SHIFT) & HMM_PFN_ORDER_MASK;
}

/** HMM_RANGE_DEFAULT_TIMEOUT in ms: a caller convention (test_hmm, umem_odp), not enforced by hmm. */
export const HMM_RANGE_DEFAULT_TIMEOUT = 1000;

/** The errnos hmm-odp returns (negated), as the kernel's values. */
export const HmmErrno = pickErrno("EPERM", "ENOENT", "EAGAIN", "ENOMEM", "EFAULT", "EBUSY", "EINVAL", "EOVERFLOW", "EOPNOTSUPP", "EREMOTEIO");

/** enum mmu_notifier_event, in kernel order. */
export const MmuNotifyEvent = {
  UNMAP: 0,
  CLEAR: 1,
  PROTECTION_VMA: 2,
  PROTECTION_PAGE: 3,
  SOFT_DIRTY: 4,
  RELEASE: 5,
  MIGRATE: 6,
  EXCLUSIVE: 7,
} as const;
export type MmuNotifyEvent = (typeof MmuNotifyEvent)[keyof typeof MmuNotifyEvent];

/** vm_flags bits the model uses (include/linux/mm.h values). */
export const VM_READ = 0x1;
/** VM_WRITE: the mapping may be written. */
export const VM_WRITE = 0x2;
/** VM_EXEC: the mapping may be executed. */
export const VM_EXEC = 0x4;
/** VM_SHARED: a shared mapping; writes reach the file or other processes, fork does not copy-on-write. */
export const VM_SHARED = 0x8;
/** VM_PFNMAP: bare page frames without struct pages (remap_pfn_range); hmm_range_fault refuses them. */
export const VM_PFNMAP = 0x400;
/** VM_IO: device memory (MMIO); hmm_range_fault refuses it. */
export const VM_IO = 0x4000;
/** VM_HUGETLB: a hugetlbfs mapping. */
export const VM_HUGETLB = 0x400000;
/** Set by vm_insert_page: a driver mapping holding pages it inserted (struct pages, not bare frames). */
export const VM_MIXEDMAP = 0x10000000;
/** VM_HUGEPAGE: madvise(MADV_HUGEPAGE): transparent huge pages wanted. */
export const VM_HUGEPAGE = 0x20000000;

/** PROT_* of mmap/mprotect. */
export const PROT_NONE = 0;
/** PROT_READ: readable. */
export const PROT_READ = 1;
/** PROT_WRITE: writable. */
export const PROT_WRITE = 2;

/** VM_FAULT_* results of handle_mm_fault the model produces. */
export const VM_FAULT_OOM = 0x1;
/** VM_FAULT_SIGBUS: the fault hit a page with no backing (past the end of a file). */
export const VM_FAULT_SIGBUS = 0x2;
/** VM_FAULT_SIGSEGV: the access is not allowed by the mapping. */
export const VM_FAULT_SIGSEGV = 0x40;
/** VM_FAULT_ERROR: any of the failure results; hmm_range_fault turns them into -EFAULT. */
export const VM_FAULT_ERROR = VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV;

/** Largest user address + 1 (x86-64 4-level paging): ranges end at or below it. */
export const TASK_SIZE = 2 ** 47;
/** The order of a PMD-mapped huge page (PMD_SHIFT - PAGE_SHIFT). */
export const HPAGE_PMD_ORDER = 9;
/** Base pages in a PMD-mapped huge page (512). */
export const HPAGE_PMD_NR = 1 << HPAGE_PMD_ORDER;
