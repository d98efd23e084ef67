import { PciInputError } from "./errors.js";

/**
 * A DMA address as the device uses it (`dma_addr_t`): what a device puts in a TLP to reach memory through
 * the DMA API's mapping (an IOVA behind an IOMMU, a bus address of RAM without one). Declared here, the
 * lowest layer that takes it (`Endpoint.dmaRead`), and re-exported by `@dmasim/dma`, whose mapping calls
 * return it. Branded so a physical address cannot be handed to a device by mistake. Made by `dmaAddr()`
 * (checked) or `unsafeDmaAddr()` (a cast for values known good).
 */
export type DmaAddr = number & { readonly __brand: "DmaAddr" };

/** Brands `n` as a DMA address; throws PciInputError (EINVAL) unless it is a safe integer >= 0. */
export function dmaAddr(n: number): DmaAddr {
  if (!Number.isSafeInteger(n) || n < 0) throw new PciInputError("", "dma_addr", n, "a safe integer >= 0");
  return n as DmaAddr;
}

/**
 * Brands `n` as a DMA address without checking: for hot paths where `n` was computed from checked values
 * (an allocated IOVA plus an in-range offset). Misuse is a bug of the caller, not an input error.
 */
export function unsafeDmaAddr(n: number): DmaAddr {
  return n as DmaAddr;
}
