import type { Access, TraceEvent as IommuTraceEvent } from "@dmasim/iommu";
import type { PhysAddr } from "@dmasim/memory";
import type { DmaAddr } from "./dma-addr.js";
import type { BusAddr } from "./bus-addr.js";

// The events the fabric reports on its platform's trace: every TLP a device issues, and the ones nothing
// claims. Address fields carry their brand (`DmaAddr | BusAddr` as issued, `PhysAddr` where it landed): a
// type only, so the serialised event (the JSON event log) is a plain number.

/** Where a TLP went: to host memory, to a peer below the same switch, or to a peer through the host bridge. */
export type FabricPath = "memory" | "peer-via-switch" | "peer-via-host-bridge";

/**
 * One memory read or write TLP (split at 4 KiB boundaries) that reached its target: `addr` as the
 * device issued it (a bus address or IOVA), `phys` where it landed, `target` the peer's BDF, "ram" or
 * "mmio" (a region that is no endpoint's BAR), and the route: `hops` names the requester, each switch
 * port, root port and host bridge it crossed, the IOMMU that translated it, and the target.
 * `acsRedirect` is true for a peer TLP that ACS sent up to the root complex although a switch above both
 * devices could have turned it around.
 */
export interface TlpEvent {
  /** Names the event: the discriminant of `PcieP2pEvent`. */
  readonly type: "tlp";
  /** Virtual time in ns. */
  readonly t: number;
  /** BDF of the device that issued the TLP. */
  readonly device: string;
  /** Which way the fabric routed it. */
  readonly path: FabricPath;
  /** Read or write. */
  readonly access: Access;
  /** The address the TLP carried, as the device issued it (a DMA address: IOVA or bus address of RAM; or a peer's bus address). */
  readonly addr: DmaAddr | BusAddr;
  /** Bytes carried, at most 4096. */
  readonly len: number;
  /** CPU physical address the TLP landed on (after IOMMU translation, if any). */
  readonly phys: PhysAddr;
  /** What it reached: the peer's BDF, "ram", or "mmio" (a region that is no endpoint's BAR). */
  readonly target: string;
  /** The route in order: requester, each switch port, root port and host bridge crossed, the translating IOMMU, and the target. */
  readonly hops: readonly string[];
  /** True for a peer TLP that ACS sent up to the root complex although a switch above both devices could have turned it around. */
  readonly acsRedirect: boolean;
}

/** A TLP no BAR and no RAM claimed: the completer answers Unsupported Request. */
export interface UnsupportedRequestEvent {
  /** Names the event: the discriminant of `PcieP2pEvent`. */
  readonly type: "unsupported-request";
  /** Virtual time in ns. */
  readonly t: number;
  /** BDF of the device that issued the TLP. */
  readonly device: string;
  /** Read or write. */
  readonly access: Access;
  /** The address nothing claimed, as the device issued it. */
  readonly addr: DmaAddr | BusAddr;
  /** Bytes the TLP asked for. */
  readonly len: number;
}

/** This package's own events. */
export type PcieP2pEvent = TlpEvent | UnsupportedRequestEvent;

/** Every event a holder of a platform sees from the layers it builds: the IOMMU's and the fabric's. */
export type TraceEvent = IommuTraceEvent | PcieP2pEvent;
