import { IommuInputError } from "./errors.js";

/**
 * An I/O virtual address: what a device behind an IOMMU puts on the bus. Made by `iova()` (checked) or
 * `unsafeIova()` (a cast for values already known good); `IommuDomain` methods take it.
 */
export type Iova = number & { readonly __brand: "Iova" };

/** Brands `n` as an IOVA after checking it is a safe integer >= 0 (nothing is truncated). */
export function iova(n: number): Iova {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new IommuInputError("", "iova", n, "a safe integer >= 0");
  }
  return n as Iova;
}

/**
 * Brands `n` as an IOVA without checking: for hot paths where `n` was computed from checked values (an
 * allocated range plus an in-range offset). Misuse is a bug of the caller, not an input error.
 */
export function unsafeIova(n: number): Iova {
  return n as Iova;
}

/** 4 KiB in bytes: the smallest IOMMU page (the IOVA granule). */
export const SZ_4K = 4096;
/** 2 MiB in bytes: a level-2 block leaf. */
export const SZ_2M = 2 * 1024 * 1024;
/** 1 GiB in bytes: a level-3 block leaf. */
export const SZ_1G = 1024 ** 3;
