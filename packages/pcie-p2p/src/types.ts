import type { DmaAccessObserver } from "./fabric.js";
import type { BusAddr } from "./bus-addr.js";
import type { DmaAddr } from "./dma-addr.js";
import type { Iommu } from "@dmasim/iommu";
import type { PhysAddr, PhysicalMemory } from "@dmasim/memory";
import type { Trace } from "@dmasim/trace";
import type { TraceEvent } from "./events.js";
import type { MapTypeAndDist, PciP2pdmaMapType } from "./p2pdma.js";
import type { HostBridgeP2p } from "./spec.js";

// Declared beside its constructors (a leaf module, so the fabric and the events can name it without a cycle).
export type { BusAddr } from "./bus-addr.js";

/** struct p2pdma_provider: a BAR range registered with pci_p2pdma_add_resource. */
export interface P2pdmaProvider {
  /** >= 1; the ZONE_DEVICE page owner id of its pages. */
  readonly id: number;
  /** BDF of the device whose BAR this is. */
  readonly owner: string;
  /** bus = phys + busOffset (pgmap->bus_offset). */
  readonly busOffset: number;
  /** CPU physical address of the first byte of the provider's range. */
  readonly phys: PhysAddr;
  /** Bus address of the same byte (`phys + busOffset`): what a peer puts in a TLP to reach it. */
  readonly bus: BusAddr;
  /** Bytes in the range; a whole number of pages. */
  readonly size: number;
  /** Index (0..5) of the BAR the range lies in. */
  readonly bar: number;
}

/** One memory BAR of an endpoint as the platform placed it (a pci_dev resource): where the CPU and peers see it. */
export interface Bar {
  /** BAR number, 0..5. */
  readonly index: number;
  /** CPU physical address of the BAR (pci_resource_start), naturally aligned to its size. */
  readonly phys: PhysAddr;
  /** Bus address of the BAR (`phys` plus the host bridge's bus offset). */
  readonly bus: BusAddr;
  /** Bytes; a power of two of at least 4096. */
  readonly size: number;
}

/** A host bridge of a built platform: its place on the P2P whitelist and the offset from CPU to bus addresses. */
export interface HostBridgeInfo {
  /** The id the spec gave it (`hb0`). */
  readonly id: string;
  /** Its place on the kernel's P2P whitelist (pci_p2pdma_whitelist): `none`, `same-host-bridge` or `any`. */
  readonly p2p: HostBridgeP2p;
  /**
   * Bytes added to a CPU physical address below this bridge to get the bus address (pci_bus_address -
   * pci_resource_start).
   */
  readonly busOffset: number;
  /** MMIO window: CPU physical base, bus base, size. iommu-dma reserves the bus range from IOVA space. */
  readonly window: { readonly phys: PhysAddr; readonly bus: BusAddr; readonly size: number };
}

/** A PCI endpoint function of a built platform (a struct pci_dev), with the DMA accesses it issues on the fabric. */
export interface Endpoint {
  /** Its `dddd:bb:dd.f` name, as pci_name() prints it. */
  readonly bdf: string;
  /**
   * pdev->untrusted: behind an external-facing port, so peers cannot bypass the IOMMU and the DMA layer is strict
   * with it.
   */
  readonly untrusted: boolean;
  /** Its memory BARs, in the order the spec lists them. */
  readonly bars: readonly Bar[];
  /**
   * The IOMMU unit that translates its requests; undefined when it has none and puts physical or bus addresses on the
   * wire.
   */
  readonly iommu: Iommu | undefined;
  /** Id of the root port or switch downstream port the endpoint's link goes to. */
  readonly parent: string;
  /** The host bridge above its root port. */
  readonly hostBridge: HostBridgeInfo;
  /**
   * A device read as TLPs (split at 4 KiB boundaries) routed like hardware. Throws PcieAccessError
   * (kind "iommu-fault" | "unsupported-request" | "private-memory", .addr, .completed bytes).
   *
   * `addr` is what the device puts on the wire: a dma_addr_t the DMA API returned (`DmaAddr`; an IOVA
   * the caller mapped itself is branded with `unsafeDmaAddr`, a computed one with `dmaAddr`) or the bus
   * address of a peer's BAR (`BusAddr`).
   */
  dmaRead(addr: DmaAddr | BusAddr, len: number): Uint8Array;
  /** dmaRead into a caller's buffer (dst.length bytes): no allocation per access. */
  dmaReadInto(addr: DmaAddr | BusAddr, dst: Uint8Array): void;
  /** A device write of `bytes` at `addr` (as dmaRead: a `DmaAddr` or a `BusAddr`). */
  dmaWrite(addr: DmaAddr | BusAddr, bytes: Uint8Array): void;
}

/**
 * A built PCIe platform (from `createPlatform`): memory, IOMMU units, the PCI tree, and the P2PDMA providers
 * registered on it.
 */
export interface Platform {
  /** Counters, clock, events and fault sites shared by every layer built on this platform. */
  readonly trace: Trace<TraceEvent>;
  /** Host physical memory: RAM, and the BARs as MMIO regions. */
  readonly memory: PhysicalMemory;
  /** The IOMMU units, in the order of the spec (empty without an IOMMU). */
  readonly iommus: readonly Iommu[];
  /** Every endpoint, in the order of the spec. */
  readonly endpoints: readonly Endpoint[];
  /** Every host bridge, in the order of the spec. */
  readonly hostBridges: readonly HostBridgeInfo[];
  /** cpu_supports_p2pdma(): the root complex routes P2P between any of its ports, whatever the whitelist says. */
  readonly cpuSupportsP2pdma: boolean;
  /**
   * The IOMMU unit of the endpoint `bdf` (undefined: none); throws `PciError` ENODEV for a BDF not on the platform.
   */
  iommuFor(bdf: string): Iommu | undefined;
  /** The endpoint named `bdf`; throws `PciError` ENODEV for a BDF not on the platform. */
  endpoint(bdf: string): Endpoint;
  /** pci_p2pdma_add_resource(pdev, bar, size, offset): size 0 or absent means "to the end of the BAR". */
  addP2pdmaProvider(bdf: string, bar: number, options?: { offset?: number; size?: number }): P2pdmaProvider;
  /** The provider with this ZONE_DEVICE owner id, or undefined (how a page's owner leads back to its BAR). */
  providerById(id: number): P2pdmaProvider | undefined;
  /** Every provider registered so far, in order of registration. */
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

/** What calc_map_type_and_dist() found for one provider and client, with the ACS ports named by id. */
export interface P2pdmaExplanation extends Omit<MapTypeAndDist, "acsRedirect"> {
  /** Ids of the ports with ACS RR, CR or EC on the path. */
  readonly acsRedirect: readonly string[];
}
