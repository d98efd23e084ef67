import type { HostBridgeP2p, IommuSpec } from "./spec.js";

/** The spec after validation: defaults filled, references resolved to indices where it helps. */
export type PortKind = "root-port" | "switch-upstream" | "switch-downstream";

export interface ResolvedIommu extends IommuSpec {
  readonly name: string;
}
export interface ResolvedHostBridge {
  readonly id: string;
  readonly path: string;
  readonly p2p: HostBridgeP2p;
  readonly busOffset: number;
  readonly mmio: { readonly base: number; readonly size: number } | undefined;
  /** Unit index, -1 for none. */
  readonly iommu: number;
}
export interface ResolvedPort {
  readonly id: string;
  readonly path: string;
  readonly kind: PortKind;
  /** A host bridge id for root ports, else a port id. */
  readonly parent: string;
  readonly acs: number;
}
export interface ResolvedBar {
  readonly index: number;
  readonly size: number;
  readonly phys: number | undefined;
  readonly path: string;
}
export interface ResolvedEndpoint {
  readonly bdf: string;
  readonly path: string;
  readonly parent: string;
  readonly untrusted: boolean;
  /** Unit index, -1 for none, undefined for "the host bridge's". */
  readonly iommu: number | undefined;
  readonly bars: readonly ResolvedBar[];
}
export interface ResolvedSpec {
  readonly ram: readonly { readonly base: number; readonly size: number; readonly name: string }[];
  readonly confidential: boolean;
  readonly iommus: readonly ResolvedIommu[];
  readonly cpuSupportsP2pdma: boolean;
  readonly hostBridges: readonly ResolvedHostBridge[];
  readonly ports: readonly ResolvedPort[];
  readonly endpoints: readonly ResolvedEndpoint[];
  readonly recordEvents: boolean;
  readonly eventCapacity: number | undefined;
}
