/**
 * Bits of a page descriptor, one Uint16Array element per page frame: a small subset of the kernel's
 * page flags and page types that the DMA layers look at.
 */
export const PageFlag = {
  /** PG_reserved: never given to the page allocator (firmware, memblock reservations). */
  Reserved: 1 << 0,
  /** is_zone_device_page(): the page belongs to a dev_pagemap (memremap_pages). */
  ZoneDevice: 1 << 1,
  /** MEMORY_DEVICE_PCI_P2PDMA: a page of a peer device's BAR (is_pci_p2pdma_page()). */
  P2pdma: 1 << 2,
  /** MEMORY_DEVICE_PRIVATE: device memory the CPU cannot address (is_device_private_page()). */
  DevicePrivate: 1 << 3,
  /** Private memory of a confidential guest (SEV/TDX): devices cannot reach it; cleared by set_memory_decrypted. */
  Encrypted: 1 << 4,
  /** Handed out by the page allocator and not yet freed. */
  Allocated: 1 << 5,
  /** PageSlab(): kmalloc memory (dma-debug and the kmalloc bounce rule care). */
  Slab: 1 << 6,
  /** Kernel text or rodata: dma-debug refuses to map it. */
  KernelText: 1 << 7,
  /** A task stack: dma-debug refuses to map it. */
  Stack: 1 << 8,
} as const;
export type PageFlag = (typeof PageFlag)[keyof typeof PageFlag];

/** Every defined flag bit. */
export const PAGE_FLAG_MASK = Object.values(PageFlag).reduce((a, b) => a | b, 0);

/** Bits that say what a page *is* (set by the memory map, not by whoever uses the page). */
export const PAGE_KIND_FLAGS = PageFlag.ZoneDevice | PageFlag.P2pdma | PageFlag.DevicePrivate | PageFlag.Encrypted;

/** Names of the bits set in `flags`, for messages and dumps: `"Allocated|Slab"`. */
export function pageFlagNames(flags: number): string {
  const names: string[] = [];
  for (const [name, bit] of Object.entries(PageFlag)) if ((flags & bit) !== 0) names.push(name);
  return names.length === 0 ? "0" : names.join("|");
}
