/**
 * Bits of a page descriptor, one Uint16Array element per page frame: a small subset of the kernel's
 * page flags and page types that the DMA layers look at.
 */
export const PageFlag = {
  /** PG_reserved: never given to the page allocator (firmware, memblock reservations). */
  RESERVED: 1 << 0,
  /** is_zone_device_page(): the page belongs to a dev_pagemap (memremap_pages). */
  ZONE_DEVICE: 1 << 1,
  /** MEMORY_DEVICE_PCI_P2PDMA: a page of a peer device's BAR (is_pci_p2pdma_page()). */
  P2PDMA: 1 << 2,
  /** MEMORY_DEVICE_PRIVATE: device memory the CPU cannot address (is_device_private_page()). */
  DEVICE_PRIVATE: 1 << 3,
  /** Private memory of a confidential guest (SEV/TDX): devices cannot reach it; cleared by set_memory_decrypted. */
  ENCRYPTED: 1 << 4,
  /** Handed out by the page allocator and not yet freed. */
  ALLOCATED: 1 << 5,
  /** PageSlab(): kmalloc memory (dma-debug and the kmalloc bounce rule care). */
  SLAB: 1 << 6,
  /** Kernel text or rodata: dma-debug refuses to map it. */
  KERNEL_TEXT: 1 << 7,
  /** A task stack: dma-debug refuses to map it. */
  STACK: 1 << 8,
} as const;
export type PageFlag = (typeof PageFlag)[keyof typeof PageFlag];

/** Every defined flag bit. */
export const PAGE_FLAG_MASK = Object.values(PageFlag).reduce((a, b) => a | b, 0);

/** Bits that say what a page *is* (set by the memory map, not by whoever uses the page). */
export const PAGE_KIND_FLAGS = PageFlag.ZONE_DEVICE | PageFlag.P2PDMA | PageFlag.DEVICE_PRIVATE | PageFlag.ENCRYPTED;

/**
 * Names of the bits set in `flags`, for messages and dumps, lower-case and joined by `|` as the kernel's
 * `%pGp` prints page flags: `"allocated|slab"`.
 */
export function pageFlagNames(flags: number): string {
  const names: string[] = [];
  for (const [name, bit] of Object.entries(PageFlag)) if ((flags & bit) !== 0) names.push(name.toLowerCase());
  return names.length === 0 ? "0" : names.join("|");
}
