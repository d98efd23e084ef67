import { AddressError } from "./errors.js";

/**
 * A CPU physical address (`phys_addr_t`). A branded number: a safe integer >= 0, never truncated.
 * Made by `physAddr()` (checked) or `unsafePhysAddr()` (a cast for values already known good). Public
 * functions return it and their parameters take it: a plain number is branded by one of those first.
 */
export type PhysAddr = number & { readonly __brand: "PhysAddr" };

/** log2 of PAGE_SIZE, as the kernel's PAGE_SHIFT on a 4 KiB-page build. */
export const PAGE_SHIFT = 12;
/** Bytes in a page frame (PAGE_SIZE): the model's only page size. */
export const PAGE_SIZE = 4096;
/** 1024 bytes, for readable sizes (`64 * KiB`). */
export const KiB = 1024;
/** 2^20 bytes. */
export const MiB = 1024 ** 2;
/**
 * The most bytes one call that returns a new buffer (`PhysicalMemory.read`, an endpoint's `dmaRead`) may
 * ask for: the buffer is host memory, and a mistyped length must be a typed error, not a multi-gigabyte
 * allocation. Larger transfers go through `readInto` / `dmaReadInto` with a buffer the caller owns.
 */
export const MAX_READ_BYTES = 256 * MiB;
/** 2^30 bytes. */
export const GiB = 1024 ** 3;
/** 2^40 bytes. */
export const TiB = 1024 ** 4;

/** Brands `n` as a physical address; throws AddressError unless it is a safe integer >= 0. */
export function physAddr(n: number): PhysAddr {
  if (!Number.isSafeInteger(n) || n < 0) throw new AddressError("phys", n, "a safe integer >= 0");
  return n as PhysAddr;
}

/**
 * Brands `n` as a physical address without checking: for hot paths where `n` was computed from values
 * already checked (a region base plus an in-range offset). Misuse is a bug of the caller, not an input error.
 */
export function unsafePhysAddr(n: number): PhysAddr {
  return n as PhysAddr;
}

/**
 * PHYS_PFN(): the page frame number holding `phys`. Division, not `>>> 12`: addresses above 4 GiB do not
 * fit the 32-bit integers that JavaScript bit operators use.
 */
export function pfnOf(phys: PhysAddr): number {
  return Math.floor(phys / PAGE_SIZE);
}

/** PFN_PHYS(): the physical address of the first byte of page frame `pfn`. */
export function pfnToPhys(pfn: number): PhysAddr {
  if (!Number.isSafeInteger(pfn) || pfn < 0 || !Number.isSafeInteger(pfn * PAGE_SIZE)) {
    throw new AddressError("pfn", pfn, "a page frame number >= 0 whose address is a safe integer");
  }
  return (pfn * PAGE_SIZE) as PhysAddr;
}

/** True when `n` is a multiple of PAGE_SIZE (PAGE_ALIGNED()). */
export function isPageAligned(n: number): boolean {
  return n % PAGE_SIZE === 0;
}

/** Throws AddressError unless `value` is a safe integer >= 0. */
export function checkNat(argument: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new AddressError(argument, value, "a safe integer >= 0");
}

/** Checks a [start, start + len) byte range: both safe integers >= 0 and the end still safe. */
export function checkRange(startArg: string, start: number, len: number): void {
  checkNat(startArg, start);
  checkNat("len", len);
  if (!Number.isSafeInteger(start + len)) {
    throw new AddressError("len", len, `a length that keeps ${startArg} + len a safe integer`);
  }
}
