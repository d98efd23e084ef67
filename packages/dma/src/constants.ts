import { pickErrno } from "@dmasim/trace";
/**
 * The DMA API's vocabulary: directions, attributes, errno values and the mapping-error address
 * (include/linux/dma-direction.h, include/linux/dma-mapping.h, include/uapi/asm-generic/errno*.h).
 */

import { DmaInputError } from "./errors.js";

/** enum dma_data_direction. */
export const DmaDirection = { BIDIRECTIONAL: 0, TO_DEVICE: 1, FROM_DEVICE: 2, NONE: 3 } as const;
export type DmaDirection = (typeof DmaDirection)[keyof typeof DmaDirection];

/** The kernel's name of a direction (`DMA_TO_DEVICE`…), as dma-debug prints it. */
export function dmaDirectionName(dir: DmaDirection): string {
  switch (dir) {
    case DmaDirection.BIDIRECTIONAL:
      return "DMA_BIDIRECTIONAL";
    case DmaDirection.TO_DEVICE:
      return "DMA_TO_DEVICE";
    case DmaDirection.FROM_DEVICE:
      return "DMA_FROM_DEVICE";
    case DmaDirection.NONE:
      return "DMA_NONE";
  }
}

/** DMA_ATTR_* bits, with the kernel's bit numbers. */
export const DMA_ATTR_WEAK_ORDERING = 1 << 1;
/** Write-combined CPU mapping of a coherent buffer; accepted, no effect in the model. */
export const DMA_ATTR_WRITE_COMBINE = 1 << 2;
/** No kernel virtual mapping for a coherent buffer; accepted, no effect in the model (it has no CPU mappings). */
export const DMA_ATTR_NO_KERNEL_MAPPING = 1 << 4;
/** Map or unmap without the CPU cache maintenance and swiotlb copy; the driver syncs itself later (dma_sync_*). */
export const DMA_ATTR_SKIP_CPU_SYNC = 1 << 5;
/** Physically contiguous coherent allocation; accepted, no effect in the model (its allocations are contiguous). */
export const DMA_ATTR_FORCE_CONTIGUOUS = 1 << 6;
/** Allocate a coherent buffer page by page; accepted, no effect in the model. */
export const DMA_ATTR_ALLOC_SINGLE_PAGES = 1 << 7;
/** Stay quiet when the mapping fails: no "swiotlb buffer is full" line in the kernel log. */
export const DMA_ATTR_NO_WARN = 1 << 8;
/** The mapping is for privileged (supervisor) accesses only: iommu-dma sets IOMMU_PRIV on its PTEs. */
export const DMA_ATTR_PRIVILEGED = 1 << 9;
/** The address is MMIO (a peer BAR), not RAM: no struct page, no cache sync, never bounced; MMIO PTE attributes. */
export const DMA_ATTR_MMIO = 1 << 10;
/** Tells dma-debug that sharing a cache line with another mapping is intended (no cacheline-overlap report). */
export const DMA_ATTR_DEBUGGING_IGNORE_CACHELINES = 1 << 11;
/** The mapping must be coherent: on a non-coherent device, or where it would bounce, it fails (DMA_MAPPING_ERROR). */
export const DMA_ATTR_REQUIRE_COHERENT = 1 << 12;
/** Every defined attribute bit; anything else is rejected as bad input. */
export const DMA_ATTR_ALL = (1 << 13) - 1 - 1 - (1 << 3);

/** errno values, returned negated as the kernel does (`return -EIO`). */
export const Errno = pickErrno("EPERM", "EIO", "ENOMEM", "EFAULT", "EBUSY", "EINVAL", "ERANGE", "EOPNOTSUPP", "EREMOTEIO");
export type Errno = (typeof Errno)[keyof typeof Errno];

/** The errno's name, sign kept (`-12` → `-ENOMEM`); the number as a string when it is not one of `Errno`. */
export function errnoName(err: number): string {
  const abs = Math.abs(err);
  for (const [name, value] of Object.entries(Errno)) if (value === abs) return err < 0 ? `-${name}` : name;
  return String(err);
}

// dma_addr_t is declared by @dmasim/pcie-p2p, the lowest layer that takes one (Endpoint.dmaRead); the DMA
// API returns and takes it, so this package re-exports the type and its constructors.
export { dmaAddr, unsafeDmaAddr } from "@dmasim/pcie-p2p";
export type { DmaAddr } from "@dmasim/pcie-p2p";
import type { DmaAddr } from "@dmasim/pcie-p2p";

/**
 * DMA_MAPPING_ERROR. The kernel uses all ones (~(dma_addr_t)0); dmasim keeps every address a safe integer
 * below 2^53, where all ones does not exist, so the error value is -1: it can never be a real address and
 * `dmaMappingError()` is still the only sanctioned test for it.
 */
export const DMA_MAPPING_ERROR = -1 as DmaAddr;

/**
 * DMA_BIT_MASK(n). Masks wider than 53 bits cover every address dmasim can represent, so they are
 * clamped to Number.MAX_SAFE_INTEGER (documented deviation: the value differs, the behaviour does not).
 */
export function DMA_BIT_MASK(n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 64) throw new DmaInputError("DMA_BIT_MASK", "n", n, "an integer number of bits from 0 to 64");
  return n >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** n - 1;
}

export const PAGE_SIZE = 4096;
/** Cache line size used by the CPU cache model and dma-debug's cacheline checks (ARCH_DMA_MINALIGN). */
export const CACHELINE_SIZE = 64;
