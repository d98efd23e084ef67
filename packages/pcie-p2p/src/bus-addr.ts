import { PciInputError } from "./errors.js";

/**
 * A PCI bus address (pci_bus_addr_t): what a device puts in a TLP to reach a BAR without an IOMMU. Made
 * by `busAddr()` (checked) or `unsafeBusAddr()` (a cast for values already known good).
 */
export type BusAddr = number & { readonly __brand: "BusAddr" };

/** Brands `n` as a PCI bus address; throws PciInputError (EINVAL) unless it is a safe integer >= 0. */
export function busAddr(n: number): BusAddr {
  if (!Number.isSafeInteger(n) || n < 0) throw new PciInputError("", "bus", n, "a safe integer >= 0");
  return n as BusAddr;
}

/**
 * Brands `n` as a bus address without checking: for hot paths where `n` was computed from checked values
 * (a BAR's bus base plus an in-range offset). Misuse is a bug of the caller, not an input error.
 */
export function unsafeBusAddr(n: number): BusAddr {
  return n as BusAddr;
}
