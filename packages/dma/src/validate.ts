import { DMA_ATTR_ALL, DmaDirection } from "./constants.js";
import { DmaInputError } from "./errors.js";

// Argument checks shared by every API entry point. They run before any state changes, so a rejected
// call leaves the model exactly as it was.

export function checkAddr(fn: string, name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new DmaInputError(fn, name, v, "a safe integer >= 0");
}

export function checkSize(fn: string, name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new DmaInputError(fn, name, v, "a safe integer number of bytes >= 0");
}

export function checkRange(fn: string, addrName: string, addr: number, size: number): void {
  checkAddr(fn, addrName, addr);
  checkSize(fn, "size", size);
  if (!Number.isSafeInteger(addr + size)) {
    throw new DmaInputError(fn, "size", size, `a size that keeps ${addrName} + size below 2^53`);
  }
}

export function checkDir(fn: string, dir: number): asserts dir is DmaDirection {
  if (dir !== DmaDirection.BIDIRECTIONAL && dir !== DmaDirection.TO_DEVICE && dir !== DmaDirection.FROM_DEVICE && dir !== DmaDirection.NONE) {
    throw new DmaInputError(fn, "dir", dir, "a DmaDirection (0 BIDIRECTIONAL, 1 TO_DEVICE, 2 FROM_DEVICE, 3 NONE)");
  }
}

export function checkAttrs(fn: string, attrs: number): void {
  if (!Number.isInteger(attrs) || attrs < 0 || (attrs & ~DMA_ATTR_ALL) !== 0) {
    throw new DmaInputError(fn, "attrs", attrs, "a combination of DMA_ATTR_* bits");
  }
}

/**
 * A mapping of zero bytes: dma-direct would hand back an address for nothing, and iommu-dma would ask
 * the IOVA allocator for a zero-sized range (iova_align(0) in drivers/iommu/dma-iommu.c), which upstream
 * never guards against. Refused as bad input on every path so the outcome does not depend on the ops.
 */
export function checkMapSize(fn: string, v: number): void {
  if (v === 0) throw new DmaInputError(fn, "size", v, "a size > 0");
}

/** 2^n - 1 for some n >= 0, tested exactly (no 32-bit bit operations, no floating-point log). */
export function isPowerOfTwoMinusOne(v: number): boolean {
  if (!Number.isSafeInteger(v) || v < 0) return false;
  let p = 1;
  while (p - 1 < v) p *= 2;
  return p - 1 === v;
}
