import { PciP2pdmaMapState, pciP2pdmaBusAddrMap, pciP2pdmaState } from "@dmasim/dma";
import type { DmaDevice } from "@dmasim/dma";
import { PAGE_SIZE } from "@dmasim/memory";
import { PciP2pdmaMapType } from "@dmasim/pcie-p2p";
import { Counter } from "@dmasim/dma";
import type { SgScratch } from "./scratch.js";
import type { SgTable } from "./sg-table.js";
import type { PhysAddr } from "@dmasim/memory";

/** How one CPU entry is mapped, from pci_p2pdma_state() of its page. */
export const EntryKind = {
  /** Memory (PCI_P2PDMA_MAP_NONE). */
  MEMORY: 0,
  /** P2P through the host bridge: an ordinary IOVA / physical address, mapped with DMA_ATTR_MMIO. */
  HOST_BRIDGE: 1,
  /** P2P through a switch: the DMA address is the bus address; nothing is mapped. */
  BUS_ADDR: 2,
} as const;
export type EntryKind = (typeof EntryKind)[keyof typeof EntryKind];

/** Per-entry kinds of one list, plus the bus address of each BUS_ADDR entry. */
export interface Classified {
  readonly kinds: Uint8Array;
  readonly busAddr: Float64Array;
  /** Any entry that is not MEMORY (lets the common case skip P2P bookkeeping). */
  readonly anyP2p: boolean;
}

/**
 * Walks the first `nents` entries with one pci_p2pdma_map_state, as the kernel's map_sg paths do.
 * Returns undefined when an entry is P2P memory the device cannot reach (NOT_SUPPORTED: -EREMOTEIO).
 * The arrays are the call's scratch (`scratch.kinds`, `scratch.busAddr`, at least `nents` long).
 */
export function classifyEntries(dev: DmaDevice, table: SgTable, nents: number, scratch: SgScratch): Classified | undefined {
  const kinds = scratch.kinds;
  const bus = scratch.busAddr;
  const state = new PciP2pdmaMapState();
  const pages = dev.kernel.memory.pages;
  let anyP2p = false;
  // RAM pages are never P2P: once an entry's page is found in a RAM range, later entries in the same
  // range skip the descriptor walk. They are still counted as one page lookup each (is_pci_p2pdma_page
  // reads every entry's page upstream), so the modelled cost does not depend on this shortcut.
  let ramLo = 0;
  let ramHi = 0;
  let ramEntries = 0;
  for (let i = 0; i < nents; i++) {
    const phys = table.phys[i] ?? 0;
    const pfn = Math.floor(phys / PAGE_SIZE);
    if (pfn >= ramLo && pfn < ramHi) {
      kinds[i] = EntryKind.MEMORY;
      ramEntries++;
      continue;
    }
    const range = pages.rangeOf(pfn);
    if (range?.kind === "ram") {
      ramLo = range.startPfn;
      ramHi = range.endPfn;
      kinds[i] = EntryKind.MEMORY;
      ramEntries++;
      continue;
    }
    const type = pciP2pdmaState(state, dev, phys as PhysAddr);
    if (type === PciP2pdmaMapType.NONE) {
      kinds[i] = EntryKind.MEMORY;
      continue;
    }
    anyP2p = true;
    if (type === PciP2pdmaMapType.THRU_HOST_BRIDGE) {
      kinds[i] = EntryKind.HOST_BRIDGE;
    } else if (type === PciP2pdmaMapType.BUS_ADDR && state.mem !== undefined) {
      kinds[i] = EntryKind.BUS_ADDR;
      bus[i] = pciP2pdmaBusAddrMap(state.mem, phys as PhysAddr);
    } else {
      dev.kernel.trace.counters.add(Counter.PageDescLookups, ramEntries);
      return undefined;
    }
  }
  dev.kernel.trace.counters.add(Counter.PageDescLookups, ramEntries);
  return { kinds, busAddr: bus, anyP2p };
}
