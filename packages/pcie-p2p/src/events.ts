import type { Access, TraceEvent as IommuTraceEvent } from "@dmasim/iommu";

// The events the fabric reports on its platform's trace: every TLP a device issues, and the ones nothing
// claims. Addresses are plain numbers in an event (a record for exporters, which know no brand).

/** Where a TLP went: to host memory, to a peer below the same switch, or to a peer through the host bridge. */
export type FabricPath = "memory" | "peer-via-switch" | "peer-via-host-bridge";

/** One memory read or write TLP (split at 4 KiB boundaries) that reached its target. */
export interface TlpEvent {
  readonly type: "tlp";
  readonly t: number;
  readonly device: string;
  readonly path: FabricPath;
  readonly access: Access;
  readonly addr: number;
  readonly len: number;
}

/** A TLP no BAR and no RAM claimed: the completer answers Unsupported Request. */
export interface UnsupportedRequestEvent {
  readonly type: "unsupported-request";
  readonly t: number;
  readonly device: string;
  readonly access: Access;
  readonly addr: number;
  readonly len: number;
}

/** This package's own events. */
export type PcieP2pEvent = TlpEvent | UnsupportedRequestEvent;

/** Every event a holder of a platform sees from the layers it builds: the IOMMU's and the fabric's. */
export type TraceEvent = IommuTraceEvent | PcieP2pEvent;
