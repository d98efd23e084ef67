import type { DmaAccessObserver } from "./fabric.js";
import type { Iommu, Iova } from "@dmasim/iommu";
import type { PhysAddr, PhysicalMemory } from "@dmasim/memory";
import type { Trace } from "@dmasim/trace";
import type { TraceEvent } from "./events.js";
import type { MapTypeAndDist, PciP2pdmaMapType } from "./p2pdma.js";
import type { HostBridgeP2p } from "./spec.js";

/**
 * A PCI bus address (pci_bus_addr_t): what a device puts in a TLP to reach a BAR without an IOMMU. Made
 * by `busAddr()` (checked) or `unsafeBusAddr()` (a cast for values already known good).
 */
export type BusAddr = number & { readonly __brand: "BusAddr" };

/** struct p2pdma_provider: a BAR range registered with pci_p2pdma_add_resource. */
export interface P2pdmaProvider {
  /** >= 1; the ZONE_DEVICE page owner id of its pages. */
  readonly id: number;
  /** BDF of the device whose BAR this is. */
  readonly owner: string;
  /** bus = phys + busOffset (pgmap->bus_offset). */
  readonly busOffset: number;
  readonly phys: PhysAddr;
  readonly bus: BusAddr;
  readonly size: number;
  readonly bar: number;
}

export interface Bar {
  readonly index: number;
  readonly phys: PhysAddr;
  readonly bus: BusAddr;
  readonly size: number;
}

export interface HostBridgeInfo {
  readonly id: string;
  readonly p2p: HostBridgeP2p;
  readonly busOffset: number;
  /** MMIO window: CPU physical base, bus base, size. iommu-dma reserves the bus range from IOVA space. */
  readonly window: { readonly phys: PhysAddr; readonly bus: BusAddr; readonly size: number };
}

export interface Endpoint {
  readonly bdf: string;
  readonly untrusted: boolean;
  readonly bars: readonly Bar[];
  readonly iommu: Iommu | undefined;
  /** Id of the root port or switch downstream port the endpoint's link goes to. */
  readonly parent: string;
  readonly hostBridge: HostBridgeInfo;
  /**
   * A device read as TLPs (split at 4 KiB boundaries) routed like hardware. Throws PcieAccessError
   * (kind "iommu-fault" | "unsupported-request" | "private-memory", .addr, .completed bytes).
   *
   * `addr` is what the device puts on the wire: a dma_addr_t the DMA API returned (`DmaAddr` of
   * @dmasim/dma, which this lower layer sees as a number), an `Iova` or a `BusAddr`. A plain number is
   * taken too: parameters widen, results carry the brand (ARCHITECTURE.md, Conventions).
   */
  dmaRead(addr: BusAddr | Iova | number, len: number): Uint8Array;
  /** dmaRead into a caller's buffer (dst.length bytes): no allocation per access. */
  dmaReadInto(addr: BusAddr | Iova | number, dst: Uint8Array): void;
  /** A device write of `bytes` at `addr` (as dmaRead: DmaAddr, Iova, BusAddr or a plain number). */
  dmaWrite(addr: BusAddr | Iova | number, bytes: Uint8Array): void;
}

export interface Platform {
  readonly trace: Trace<TraceEvent>;
  readonly memory: PhysicalMemory;
  readonly iommus: readonly Iommu[];
  readonly endpoints: readonly Endpoint[];
  readonly hostBridges: readonly HostBridgeInfo[];
  readonly cpuSupportsP2pdma: boolean;
  iommuFor(bdf: string): Iommu | undefined;
  endpoint(bdf: string): Endpoint;
  /** pci_p2pdma_add_resource(pdev, bar, size, offset): size 0 or absent means "to the end of the BAR". */
  addP2pdmaProvider(bdf: string, bar: number, options?: { offset?: number; size?: number }): P2pdmaProvider;
  providerById(id: number): P2pdmaProvider | undefined;
  readonly providers: readonly P2pdmaProvider[];
  /** pci_p2pdma_map_type(): how `client` must address the provider's memory. */
  pciP2pdmaMapType(provider: P2pdmaProvider, client: string): PciP2pdmaMapType;
  /** pci_p2pdma_distance_many(): sum of distances to every client, -1 when any cannot reach it (or none given). */
  pciP2pdmaDistance(provider: P2pdmaProvider, clients: readonly string[]): number;
  /** calc_map_type_and_dist() in full: the type, the distance and the ports whose ACS redirect counted. */
  pciP2pdmaExplain(provider: P2pdmaProvider, client: string): P2pdmaExplanation;
  /** The tree, one node per line, like `lspci -tv` with ACS bits and BARs. */
  describe(): string;
  /**
   * Installs (or, with undefined, removes) the one observer of device DMA on this platform; the DMA
   * layer uses it for cache snooping and debug checks. Replaces any earlier observer.
   */
  setDmaObserver(observer: DmaAccessObserver | undefined): void;
  /** The installed observer of device DMA, if any (a DMA layer refuses to start on a platform that has one). */
  readonly dmaObserver: DmaAccessObserver | undefined;
}

export interface P2pdmaExplanation extends Omit<MapTypeAndDist, "acsRedirect"> {
  /** Ids of the ports with ACS RR, CR or EC on the path. */
  readonly acsRedirect: readonly string[];
}
