/**
 * Sizes and flag bits of the scatterlist structures (include/linux/scatterlist.h) on a 64-bit kernel with
 * CONFIG_NEED_SG_DMA_LENGTH and CONFIG_NEED_SG_DMA_FLAGS.
 */

/** sizeof(struct scatterlist): page_link 8, offset 4, length 4, dma_address 8, dma_length 4, dma_flags 4. */
export const SG_ENTRY_BYTES = 32;
/** sizeof(struct sg_table): sgl 8, nents 4, orig_nents 4. */
export const SG_TABLE_BYTES = 16;
/** SG_MAX_SINGLE_ALLOC: entries in one page-sized chunk; the last one of a full chunk is the chain link. */
export const SG_MAX_SINGLE_ALLOC = 4096 / SG_ENTRY_BYTES;

/** Bits of the per-entry flags column. */
export const SgDmaFlag = {
  /** SG_DMA_BUS_ADDRESS: the DMA address is a PCI bus address (P2P through a switch), not IOMMU-mapped. */
  BUS_ADDRESS: 1 << 0,
  /** SG_DMA_SWIOTLB: the list was mapped segment by segment through swiotlb (set on entry 0, as upstream). */
  SWIOTLB: 1 << 1,
  /** dmasim: this entry's data went through a bounce buffer. */
  BOUNCED: 1 << 2,
  /** dmasim: this entry was mapped with DMA_ATTR_MMIO (P2P through the host bridge); unmapped likewise. */
  MMIO: 1 << 3,
} as const;
export type SgDmaFlag = (typeof SgDmaFlag)[keyof typeof SgDmaFlag];

/**
 * The most entries one table may have. The kernel's `nents` is an unsigned int and the chunks come from
 * the page allocator, which says -ENOMEM long before 2^32 entries; dmasim keeps a table in host memory
 * (33 bytes an entry), so it sets the limit at 4 Mi entries (128 MiB of modelled struct scatterlist, a
 * 16 GiB list of 4 KiB pages) and refuses more with ENOMEM, before allocating anything.
 */
export const SG_MAX_NENTS = 1 << 22;
/** UINT_MAX: what sg_alloc_table_from_pages passes as the segment limit. */
export const SG_NO_SEGMENT_LIMIT = 0xffffffff;
