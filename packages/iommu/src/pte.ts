/**
 * How one 64-bit page-table entry is held in a float64. Every address in an entry is a multiple of
 * 4 KiB, so the low 12 bits are free for flags, exactly as in real formats (VT-d second level, AMD v1,
 * ARM LPAE). Encoding uses arithmetic (`+`), so physical addresses above 4 GiB survive. Decoding the
 * flags may use 32-bit bit operators: ToInt32 reduces an integer modulo 2^32 exactly, so the low 12
 * bits come through intact whatever the address (and it avoids a floating-point remainder, which V8
 * compiles to a library call).
 *
 *   leaf:  phys + PTE_VALID + PTE_LEAF + prot * PTE_PROT_UNIT (+ PTE_PENDING)
 *   table: tableIndex * PTE_ADDR_UNIT + PTE_VALID
 *   empty: 0
 */
export const PTE_VALID = 1;
export const PTE_LEAF = 2;
/** IommuProt bits are stored shifted left by 2: prot * 4 occupies bits 2..6. */
export const PTE_PROT_UNIT = 4;
/**
 * Written while the unit requires iotlb_sync_map and not yet synced: present in memory (the CPU sees
 * it, iova_to_phys finds it) but not yet seen by the hardware walker (VT-d caching mode, virtual IOMMU).
 */
export const PTE_PENDING = 128;
export const PTE_ADDR_UNIT = 4096;
export const ENTRIES_PER_TABLE = 512;

/** Bytes covered by one entry of a level: level 1 holds 4 KiB leaves, level 2 2 MiB, level 3 1 GiB. */
export const LEVEL_SIZE: readonly number[] = [0, 2 ** 12, 2 ** 21, 2 ** 30, 2 ** 39, 2 ** 48];

export function pteFlags(pte: number): number {
  return pte & 4095;
}

export function pteAddr(pte: number): number {
  return pte - (pte & 4095);
}

/**
 * The table number a table entry points to: a multiplication by the exact reciprocal of 4096 and a
 * truncation that drops the flag bits (table numbers stay far below 2^31).
 */
export function pteTable(pte: number): number {
  return (pte * (1 / PTE_ADDR_UNIT)) | 0;
}

/**
 * Index into the table of level `l` (1 = the 4 KiB-leaf table) for an address given as its low and
 * high 32-bit halves: 9 bits per level, from bit 12 upwards. Integer operations only, no division.
 */
export function tableIndex(low: number, high: number, l: number): number {
  switch (l) {
    case 1:
      return (low >>> 12) & 511;
    case 2:
      return (low >>> 21) & 511;
    case 3:
      return ((low >>> 30) | (high << 2)) & 511;
    case 4:
      return (high >>> 7) & 511;
    default:
      return (high >>> 16) & 511;
  }
}

export function pteIsLeaf(pte: number): boolean {
  return (pteFlags(pte) & PTE_LEAF) !== 0;
}

export function ptePending(pte: number): boolean {
  return (pteFlags(pte) & PTE_PENDING) !== 0;
}

/** The IommuProt bits of a leaf entry. */
export function ptePerm(pte: number): number {
  return (pte >>> 2) & 31;
}
