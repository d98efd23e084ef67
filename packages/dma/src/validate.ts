import { DMA_ATTR_ALL, DmaDirection } from "./constants.js";
import { DmaDevice } from "./device.js";
import { DmaInputError } from "./errors.js";

// Argument checks shared by every API entry point. They run before any state changes, so a rejected
// call leaves the model exactly as it was.
//
// The `is…` predicates answer whether the matching checks would pass, without building an error: hot
// entry points test the common valid call with them first (one combined test) and run the precise
// checks, in their usual order, only when that fails. Each implies its checks, never the reverse.

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const DIR_BIDIRECTIONAL = DmaDirection.BIDIRECTIONAL;
const DIR_TO_DEVICE = DmaDirection.TO_DEVICE;
const DIR_FROM_DEVICE = DmaDirection.FROM_DEVICE;
const DIR_NONE = DmaDirection.NONE;
const ATTR_ALL = DMA_ATTR_ALL;

/** checkAddr / checkSize would pass: a safe integer >= 0. */
export function isIndex(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= MAX_SAFE;
}

/** checkRange would pass (stricter at the very top: addr + size must not exceed 2^53 - 1). */
export function isRange(addr: number, size: number): boolean {
  return Number.isInteger(addr) && Number.isInteger(size) && addr >= 0 && size >= 0 && addr + size <= MAX_SAFE;
}

/** checkDevice would pass: a DmaDevice (not undefined, a BDF or a look-alike) that is still bound. */
export function isBoundDevice(dev: unknown): dev is DmaDevice {
  // The class is read at call time: device.ts imports this module, so a module-level copy would be
  // taken before the class exists.
  return dev instanceof DmaDevice && dev.bound;
}

/** checkDevice and checkRange would pass. */
export function isBoundRange(dev: unknown, addr: number, size: number): boolean {
  return dev instanceof DmaDevice && dev.bound && isRange(addr, size);
}

/** checkDir would pass. */
export function isDir(dir: number): boolean {
  return dir === DIR_BIDIRECTIONAL || dir === DIR_TO_DEVICE || dir === DIR_FROM_DEVICE || dir === DIR_NONE;
}

/** checkAttrs would pass (only attribute words that fit in 31 bits; others get the precise check). */
export function isAttrs(attrs: number): boolean {
  // typeof first: `|` on a BigInt throws a TypeError.
  return typeof attrs === "number" && (attrs | 0) === attrs && attrs >= 0 && (attrs & ~ATTR_ALL) === 0;
}

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
  // Bit operations see only the low 32 bits: a word above them carries unknown bits whatever `&` says.
  if (!Number.isInteger(attrs) || attrs < 0 || attrs > 0xffffffff || (attrs & ~DMA_ATTR_ALL) !== 0) {
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
