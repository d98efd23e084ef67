import { PAGE_SIZE, PageFlag, type PhysAddr } from "@dmasim/memory";
import { PciP2pdmaMapType } from "@dmasim/pcie-p2p";
import type { P2pdmaProvider } from "@dmasim/pcie-p2p";
import { Counter } from "./counters.js";
import type { DmaAddr } from "./constants.js";
import { checkDevice } from "./api-trace.js";
import type { DmaDevice } from "./device.js";
import { DmaInputError } from "./errors.js";
import { checkAddr, isBoundDevice, isIndex } from "./validate.js";

/**
 * struct pci_p2pdma_map_state (include/linux/pci-p2pdma.h): the map type of the last provider seen, so
 * walking many pages of one provider decides the type once.
 */
export class PciP2pdmaMapState {
  /** The provider of the last P2P page seen; undefined before the first. */
  mem: P2pdmaProvider | undefined = undefined;
  /** How the device reaches that provider: bus address, through the host bridge, or not at all. */
  map: PciP2pdmaMapType = PciP2pdmaMapType.UNKNOWN;
}

/** The P2P provider that owns the page at `phys`, or undefined for any other memory. */
export function p2pdmaProviderOf(dev: DmaDevice, phys: PhysAddr): P2pdmaProvider | undefined {
  if (!(isBoundDevice(dev) && isIndex(phys))) {
    checkDevice("p2pdma_provider_of", dev);
    checkAddr("p2pdma_provider_of", "phys", phys);
  }
  const pages = dev.kernel.memory.pages;
  const pfn = Math.floor(phys / PAGE_SIZE);
  // PageDescriptors counts its own lookups (flags: is_pci_p2pdma_page, owner: page_pgmap).
  if (!pages.hasPage(pfn) || (pages.flags(pfn) & PageFlag.P2PDMA) === 0) return undefined;
  return dev.kernel.platform.providerById(pages.owner(pfn));
}

/**
 * pci_p2pdma_state: NONE for memory that is not P2P; otherwise the provider's map type for `dev`,
 * recomputed only when the provider changes.
 */
export function pciP2pdmaState(state: PciP2pdmaMapState, dev: DmaDevice, phys: PhysAddr): PciP2pdmaMapType {
  if (!(state instanceof PciP2pdmaMapState && isBoundDevice(dev) && isIndex(phys))) {
    const fn = "pci_p2pdma_state";
    if (!(state instanceof PciP2pdmaMapState)) throw new DmaInputError(fn, "state", state, "a PciP2pdmaMapState");
    checkDevice(fn, dev);
    checkAddr(fn, "phys", phys);
  }
  const provider = p2pdmaProviderOf(dev, phys);
  if (provider === undefined) return PciP2pdmaMapType.NONE;
  if (state.mem !== provider) {
    dev.kernel.trace.counters.add(Counter.P2pStateLookups);
    state.mem = provider;
    state.map = dev.kernel.platform.pciP2pdmaMapType(provider, dev.bdf);
  }
  return state.map;
}

/** pci_p2pdma_bus_addr_map: the bus address a peer uses for the provider's memory at `phys`. */
export function pciP2pdmaBusAddrMap(provider: P2pdmaProvider, phys: PhysAddr): DmaAddr {
  return (phys + provider.busOffset) as DmaAddr;
}
