/**
 * CPU page-table entry kinds. A PTE is one byte of a VMA's `pte` array (kind in the low 4 bits plus the
 * bits below) and a 32-bit word of its `pfn` array: the page frame for present, zero, migration,
 * device-private and device-exclusive entries, the swap slot for swap entries.
 */
export const PteKind = {
  /** pte_none: never faulted, or zapped. */
  NONE: 0,
  /** A present entry mapping a page (read-only unless PTE_WRITE). */
  PRESENT: 1,
  /** The shared zero page (always read-only). */
  ZERO: 2,
  /** A swap entry: the page's bytes are in swap slot `pfn`. */
  SWAP: 3,
  /** A migration entry: the page `pfn` is being migrated; faults wait (-EBUSY to hmm). */
  MIGRATION: 4,
  /** A device-private entry: the page lives in device memory `pfn` (PTE_WRITE: writable). */
  DEVICE_PRIVATE: 5,
  /** A device-exclusive entry: page `pfn`, owned by a device until the CPU touches it. */
  DEVICE_EXCLUSIVE: 6,
  /** A NUMA-hinting protnone entry of page `pfn`. */
  PROTNONE: 7,
  /** A special mapping (VM_PFNMAP/VM_IO): a frame with no struct page the mm manages. */
  SPECIAL: 8,
} as const;
export type PteKind = (typeof PteKind)[keyof typeof PteKind];

export const PTE_KIND_MASK = 0x0f;
/** pte_write. */
export const PTE_WRITE = 0x10;
/** Part of a PMD-mapped huge page (order 9): a THP or a hugetlb page. */
export const PTE_PMD = 0x20;
/** pte_dirty: written by the CPU since mapped. */
export const PTE_DIRTY = 0x40;

/** Names of the PteKind values, indexed by kind, for messages and dumps. */
export const PTE_KIND_NAMES: readonly string[] = ["none", "present", "zero", "swap", "migration", "device-private", "device-exclusive", "protnone", "special"];
