export {
  HMM_PFN_VALID,
  HMM_PFN_WRITE,
  HMM_PFN_ERROR,
  HMM_PFN_DMA_MAPPED,
  HMM_PFN_P2PDMA,
  HMM_PFN_P2PDMA_BUS,
  HMM_PFN_ORDER_SHIFT,
  HMM_PFN_ORDER_MASK,
  HMM_PFN_REQ_FAULT,
  HMM_PFN_REQ_WRITE,
  HMM_PFN_FLAGS,
  HMM_PFN_INOUT_FLAGS,
  HMM_RANGE_DEFAULT_TIMEOUT,
  HPAGE_PMD_NR,
  HPAGE_PMD_ORDER,
  HmmErrno,
  MmuNotifyEvent,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  TASK_SIZE,
  VM_EXEC,
  VM_FAULT_ERROR,
  VM_FAULT_OOM,
  VM_FAULT_SIGBUS,
  VM_FAULT_SIGSEGV,
  VM_HUGEPAGE,
  VM_HUGETLB,
  VM_IO,
  VM_MIXEDMAP,
  VM_PFNMAP,
  VM_READ,
  VM_SHARED,
  VM_WRITE,
  hmmPfnToMapOrder,
} from "./constants.js";
export { HmmInputError, HmmStateError } from "./errors.js";
export { InvalidationLog } from "./contract.js";
export type { InvalidationRecord } from "./contract.js";
export { PteKind, PTE_KIND_NAMES } from "./pte.js";
export { MmSystem } from "./mm-system.js";
// MmFile, Vma and DevPagemap are made by the model only (createFile, mmap, memremapPages): exported as
// types, so their constructors are not part of the API.
export type { MmFile, MmStats } from "./mm-system.js";
export { Mm, FAULT_FLAG_REMOTE, FAULT_FLAG_WRITE, MADV_DONTNEED, MADV_FREE, MADV_HUGEPAGE, MREMAP_DONTUNMAP } from "./mm.js";
export type { MmapOptions } from "./mm.js";
export type { Vma } from "./vma.js";
export { FOLL_LONGTERM, FOLL_WRITE, getUserPages, putUserPages } from "./gup.js";
export {
  MMU_NOTIFIER_RANGE_BLOCKABLE,
  MmuIntervalNotifier,
  MmuNotifierSubscriptions,
  UserLock,
  hmmCheckMayProgram,
  mmuIntervalCheckRetry,
  mmuIntervalNotifierInsert,
  mmuIntervalNotifierRemove,
  mmuIntervalReadBegin,
  mmuIntervalReadRetry,
  mmuIntervalSetSeq,
  mmuNotifierInvalidateRangeEnd,
  mmuNotifierInvalidateRangeStart,
  mmuNotifierRangeBlockable,
  mmuNotifierRelease,
} from "./notifier.js";
export type { MmuIntervalNotifierFinish, MmuIntervalNotifierOps, MmuNotifierRange, NotifierMm } from "./notifier.js";
export { HmmRange, hmmRangeFault } from "./hmm.js";
export { HmmDmaMap, hmmDmaMapAlloc, hmmDmaMapFree, hmmDmaMapPfn, hmmDmaMapPfnRun, hmmDmaUnmapPfn, hmmP2pState } from "./hmm-dma.js";
export { MemoryType, memremapPages, memremapPagesCoherent, memunmapPages } from "./pagemap.js";
export type { DevPagemap, DevPagemapOps, VmFault } from "./pagemap.js";
export {
  MIGRATE_PFN_COMPOUND,
  MIGRATE_PFN_MIGRATE,
  MIGRATE_PFN_SHIFT,
  MIGRATE_PFN_VALID,
  MIGRATE_PFN_WRITE,
  MIGRATE_VMA_SELECT_COMPOUND,
  MIGRATE_VMA_SELECT_DEVICE_COHERENT,
  MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
  MIGRATE_VMA_SELECT_SYSTEM,
  MigrateDevice,
  MigrateVma,
  migrateDeviceFinalize,
  migrateDevicePages,
  migrateDeviceRange,
  migratePfn,
  migratePfnToPfn,
  migrateVmaFinalize,
  migrateVmaPages,
  migrateVmaSetup,
} from "./migrate.js";
export {
  Dmirror,
  DmirrorDevice,
  HMM_DMIRROR_FLAG_FAIL_ALLOC,
  HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL,
  HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE,
  HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL,
  HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE,
  HMM_DMIRROR_PROT_ERROR,
  HMM_DMIRROR_PROT_NONE,
  HMM_DMIRROR_PROT_PMD,
  HMM_DMIRROR_PROT_PUD,
  HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_WRITE,
  HMM_DMIRROR_PROT_ZERO,
  HmmDmirrorIoctl,
  hmmDmirrorCmd,
} from "./dmirror.js";
export type { DmirrorCosts, DmirrorDeviceOptions, DmirrorFaultStep, HmmDmirrorCmd } from "./dmirror.js";
export { DEFAULT_HMM_FAULT_COSTS, compareHmmDmaStrategy, hmmDmaComparisonTable } from "./compare.js";
export type { HmmDmaComparisonRow, HmmDmaStrategy, HmmFaultCosts } from "./compare.js";
export type { HmmDmaMapPfnEvent, HmmDmaUnmapPfnEvent, HmmMigrateEvent, HmmOdpEvent, HmmRangeFaultEvent, MmuNotifierInvalidateEvent, TraceEvent } from "./events.js";
