/**
 * The kmalloc() size classes the kmalloc bounce rule reasons about (mm/slab_common.c kmalloc_info, SLUB,
 * 4 KiB pages) and the rule itself (include/linux/dma-map-ops.h). dmasim has no slab allocator: a
 * streaming mapping is judged by its size alone, as upstream does, assuming it may be a kmalloc() buffer.
 *
 * Assumed: CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC lowers ARCH_KMALLOC_MINALIGN to 8 (arm64), so every
 * cache from kmalloc-8 exists, including kmalloc-96 and kmalloc-192 (they need KMALLOC_MIN_SIZE <= 32 and
 * <= 64); KMALLOC_MAX_CACHE_SIZE is two pages, above which kmalloc hands out whole pages.
 */

/** ARCH_DMA_MINALIGN of the model unless the kernel is told otherwise (the CPU cache's line size). */
export const ARCH_DMA_MINALIGN_DEFAULT = 64;

/** Object sizes of the kmalloc caches, smallest first (kmalloc_info up to KMALLOC_MAX_CACHE_SIZE). */
export const KMALLOC_CACHE_SIZES: readonly number[] = [8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192];

const PAGE = 4096;
const KMALLOC_MAX_CACHE_SIZE = 2 * PAGE;

/**
 * kmalloc_size_roundup: the object size kmalloc() would really hand out for `size` bytes — the smallest
 * cache that holds it, whole pages (a power-of-two order) above the largest cache, and `size` itself for 0.
 */
export function kmallocSizeRoundup(size: number): number {
  if (size <= 0) return size;
  if (size <= KMALLOC_MAX_CACHE_SIZE) {
    for (const c of KMALLOC_CACHE_SIZES) if (c >= size) return c;
  }
  let bytes = PAGE;
  while (bytes < size) bytes *= 2;
  return bytes;
}

/**
 * dma_kmalloc_size_aligned: a buffer of `size` bytes cannot share a cache line with another kmalloc()
 * object when it is at least 2 * ARCH_DMA_MINALIGN (those caches are aligned to it) or when the cache it
 * comes from has an object size that is a multiple of dma_get_cache_alignment(). With the default 64:
 * sizes of 33–64 and 97–127 bytes and anything from 128 on are aligned; 1–32 and 65–96 are not.
 */
export function dmaKmallocSizeAligned(size: number, archDmaMinalign: number): boolean {
  return size >= 2 * archDmaMinalign || kmallocSizeRoundup(size) % archDmaMinalign === 0;
}
