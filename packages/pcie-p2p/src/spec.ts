/**
 * The platform spec: plain JSON, so a scenario can live in a file. Every field but `memory` is optional;
 * createPlatform validates it all and fills the defaults described on each field.
 */
export interface PlatformSpec {
  readonly memory: MemorySpec;
  /**
   * IOMMU units. Absent: no IOMMU, devices issue physical addresses. `{}`: one unit "iommu0" serving
   * every endpoint. An array: several units, named "iommu<i>" unless given a name; an endpoint uses its
   * host bridge's unit, else the first one.
   */
  readonly iommu?: IommuSpec | readonly IommuSpec[];
  /**
   * cpu_supports_p2pdma(): the CPU's root complex routes P2P between any of its ports (AMD Zen and later),
   * which overrides the host-bridge whitelist. Default false.
   */
  readonly cpuSupportsP2pdma?: boolean;
  /** Host bridges; default one, "hb0", not on the P2P whitelist. The first one is the default parent. */
  readonly hostBridges?: readonly HostBridgeSpec[];
  readonly rootPorts?: readonly RootPortSpec[];
  readonly switches?: readonly SwitchSpec[];
  readonly endpoints?: readonly EndpointSpec[];
  /** Trace options: record events from the start (default false) and the ring size. */
  readonly trace?: { readonly recordEvents?: boolean; readonly eventCapacity?: number };
}

export interface MemorySpec {
  /** RAM from physical address 0, one contiguous region (no PC-style hole below 4 GiB). */
  readonly ramBytes?: number;
  /** Explicit RAM regions, page aligned, non-overlapping; use instead of ramBytes. */
  readonly ram?: readonly { readonly base: number; readonly size: number; readonly name?: string }[];
  /** A confidential guest (SEV-SNP, TDX): RAM is private (encrypted) until shared with the device. */
  readonly confidential?: boolean;
}

export interface IommuSpec {
  readonly name?: string;
  readonly iotlbEntries?: number;
  readonly iotlbWays?: number;
  readonly pgsizeBitmap?: number;
  readonly requiresSyncMap?: boolean;
  readonly vaBits?: number;
}

/**
 * Where a host bridge stands on the kernel's P2P whitelist (drivers/pci/p2pdma.c, pci_p2pdma_whitelist):
 * "none" — not listed, peer traffic through it is refused; "same-host-bridge" — listed with
 * REQ_SAME_HOST_BRIDGE (Intel Xeon entries): only between ports of this bridge; "any" — listed without
 * restriction (AMD Zen root complexes), also to other whitelisted bridges.
 */
export type HostBridgeP2p = "none" | "same-host-bridge" | "any";

export interface HostBridgeSpec {
  readonly id: string;
  /** Default "none". */
  readonly p2p?: HostBridgeP2p;
  /** bus = phys + busOffset for MMIO behind this bridge (pci_bus_address - pci_resource_start). Default 0. */
  readonly busOffset?: number;
  /** The bridge's MMIO window (CPU physical). Default: 1 TiB windows placed one after another above RAM. */
  readonly mmio?: { readonly base: number; readonly size: number };
  /** IOMMU unit serving endpoints below it (their default); null: none. Default: the first unit. */
  readonly iommu?: string | null;
}

/** ACS control bits of a port (PCI_ACS_CTRL). Absent bits are clear. */
export interface AcsSpec {
  /** Source Validation. */
  readonly sv?: boolean;
  /** P2P Request Redirect: peer requests entering here are sent upstream to the root complex. */
  readonly rr?: boolean;
  /** P2P Completion Redirect. */
  readonly cr?: boolean;
  /** Upstream Forwarding. */
  readonly uf?: boolean;
  /** P2P Egress Control (modelled as blocking every peer egress, i.e. redirecting upstream). */
  readonly ec?: boolean;
}

export interface RootPortSpec {
  readonly id: string;
  /** Default: the first host bridge. */
  readonly hostBridge?: string;
  readonly acs?: AcsSpec;
}

export interface SwitchPortSpec {
  readonly id: string;
  readonly acs?: AcsSpec;
}

export interface SwitchSpec {
  readonly id: string;
  /** A root port or a downstream port of another switch. Default: a root port of its own, "rp:<id>". */
  readonly parent?: string;
  /** ACS of the upstream port (id "<id>.up"). */
  readonly upstreamAcs?: AcsSpec;
  /** ACS applied to every downstream port that does not give its own. */
  readonly acs?: AcsSpec;
  /** A count (ports named "<id>.dp<i>") or the ports, by id or with their ACS. */
  readonly downstreamPorts: number | readonly (string | SwitchPortSpec)[];
}

export interface BarSpec {
  /** BAR number 0..5; default its position in the list. */
  readonly index?: number;
  /** A power of two >= 4096 bytes (a page: P2P memory is handed out in pages). */
  readonly size: number;
  /** CPU physical address, naturally aligned and inside the host bridge window; default placed automatically. */
  readonly phys?: number;
}

export interface EndpointSpec {
  /** "dddd:bb:dd.f", lowercase hex, as pci_name() prints it. */
  readonly bdf: string;
  /**
   * A root port or a switch downstream port. Default: a root port of the first host bridge shared by the
   * endpoints of the same domain and bus ("rp:dddd:bb"), so functions of one device share a link and
   * separate devices do not.
   */
  readonly parent?: string;
  /** Behind an external-facing port (Thunderbolt, a hot-plug slot): see README, "Untrusted devices". */
  readonly untrusted?: boolean;
  /** IOMMU unit name, or null for none. Default: the host bridge's unit. */
  readonly iommu?: string | null;
  readonly bars?: readonly BarSpec[];
}
