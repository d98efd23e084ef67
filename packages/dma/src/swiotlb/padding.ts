import { hex } from "@dmasim/trace";
import { SwiotlbError } from "./errors.js";
import type { SwiotlbPool } from "./pool.js";
import type { PhysAddr } from "@dmasim/memory";

/**
 * Zero the bytes of the IOVA granule around a bounced range that do not belong to it: from the granule
 * start up to `tlbAddr`, and from `tlbAddr + size` up to the next granule end. iommu_dma_map_swiotlb()
 * (drivers/iommu/dma-iommu.c) does this for untrusted devices, because the IOMMU maps whole granules and
 * the device could otherwise read whatever an earlier user left in those slots. The bounce buffer must
 * have been allocated with allocAlignMask = granule - 1 so the whole granule is part of the allocation;
 * anything else is refused (SwiotlbError) before a byte is written.
 */
export function swiotlbZeroPadding(pool: SwiotlbPool, tlbAddr: number, size: number, granule: number): { pre: number; post: number } {
  const fn = "swiotlbZeroPadding";
  if (!Number.isSafeInteger(granule) || granule < 1 || (granule & (granule - 1)) !== 0 || granule > 2 ** 30) {
    throw new SwiotlbError("EINVAL", `${fn}: granule = ${String(granule)} is invalid: expected a power of two`);
  }
  if (!Number.isSafeInteger(tlbAddr) || tlbAddr < 0) {
    throw new SwiotlbError("EINVAL", `${fn}: tlbAddr = ${String(tlbAddr)} is invalid: expected a physical address`);
  }
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new SwiotlbError("EINVAL", `${fn}: size = ${String(size)} is invalid: expected a positive number of bytes`);
  }
  const preStart = Math.floor(tlbAddr / granule) * granule;
  const postStart = tlbAddr + size;
  const postEnd = Math.ceil(postStart / granule) * granule;
  pool.checkAllocated(fn, preStart as PhysAddr, postEnd - preStart);
  if (postEnd - preStart <= 0) throw new SwiotlbError("EINVAL", `${fn}: empty range at ${hex(tlbAddr)}`);
  const pre = tlbAddr - preStart;
  const post = postEnd - postStart;
  if (pre > 0) pool.memory.fill(preStart as PhysAddr, pre, 0);
  if (post > 0) pool.memory.fill(postStart as PhysAddr, post, 0);
  return { pre, post };
}
