// `@dmasim/pcie-p2p/testing`: the one test topology the packages above share (scatterlist, bio and dma
// each used to rebuild it under their own names), and the BDFs of its endpoints. For tests and
// examples; a model never imports it.
import type { EndpointSpec, HostBridgeP2p, HostBridgeSpec, PlatformSpec, RootPortSpec } from "./spec.js";

/**
 * The endpoints of `switchTopology`, by role (and DEV, the lone device of the simplest platforms):
 *
 *   hb0 ─ rp0 ─ sw0 ─ dp0 ─ CLIENT        the DMA device under test
 *     │            ├ dp1 ─ SWITCH_PEER   a peer behind the same switch (P2P: BUS_ADDR)
 *     │            └ dp2 ─ SWITCH_SPARE  optional, e.g. an untrusted device
 *     ├ rp1 ─ BRIDGE_PEER                 a peer on another root port (P2P: through hb0, if listed)
 *     └ rp3 ─ ROOT_PORT_DEVICE            optional, alone on its root port
 *   hb1 ─ rp2 ─ FAR_PEER                  optional, behind a second host bridge (P2P: not supported)
 */
export const TestBdf = {
  /** The lone device of a platform without this topology (`endpoints: [{ bdf: TestBdf.DEV }]`). */
  DEV: "0000:01:00.0",
  CLIENT: "0000:02:00.0",
  SWITCH_PEER: "0000:03:00.0",
  SWITCH_SPARE: "0000:04:00.0",
  BRIDGE_PEER: "0000:05:00.0",
  FAR_PEER: "0000:07:00.0",
  ROOT_PORT_DEVICE: "0000:08:00.0",
} as const;
export type TestBdf = (typeof TestBdf)[keyof typeof TestBdf];

/** What an optional endpoint of the topology carries besides its place (`bdf` and `parent` are fixed). */
export type TestEndpoint = Omit<EndpointSpec, "bdf" | "parent">;

/** What `switchTopology` varies: memory size, the IOMMU, hb0's P2P routing, and the optional endpoints. */
export interface SwitchTopologyOptions {
  /** RAM from 0; default 1 GiB. */
  readonly ramBytes?: number;
  /** A confidential guest (absent: the memory spec says nothing). */
  readonly confidential?: boolean;
  /** One IOMMU for every endpoint; default true. */
  readonly iommu?: boolean;
  /** hb0's place on the P2P whitelist (absent: the spec's default, "none"). */
  readonly hostBridgeP2p?: HostBridgeP2p;
  /** hb0's bus offset (absent: the spec's default, 0). */
  readonly busOffset?: number;
  /** Options of the device under test on sw0.dp0 (`TestBdf.CLIENT`), e.g. its BARs. */
  readonly client?: TestEndpoint;
  /** Options of the peer on sw0.dp1 (`TestBdf.SWITCH_PEER`). */
  readonly switchPeer?: TestEndpoint;
  /** The endpoint on sw0.dp2; absent: the port stays empty. */
  readonly switchSpare?: TestEndpoint;
  /** Options of the peer on rp1 (`TestBdf.BRIDGE_PEER`), reached through hb0. */
  readonly bridgePeer?: TestEndpoint;
  /** The endpoint behind hb1 (adds hb1 and rp2); absent: no second host bridge. */
  readonly farPeer?: TestEndpoint;
  /** The endpoint on rp3; absent: no rp3. */
  readonly rootPortDevice?: TestEndpoint;
  /** Downstream ports of sw0; default 3. */
  readonly switchPorts?: number;
}

/** A platform spec whose topology lists are all present. */
export type TestPlatformSpec = PlatformSpec & Required<Pick<PlatformSpec, "hostBridges" | "rootPorts" | "switches" | "endpoints">>;

/** The shared test platform (see `TestBdf` for the picture), as a spec for `createPlatform`. */
export function switchTopology(options: SwitchTopologyOptions = {}): TestPlatformSpec {
  const hb0: HostBridgeSpec = {
    id: "hb0",
    ...(options.hostBridgeP2p === undefined ? {} : { p2p: options.hostBridgeP2p }),
    ...(options.busOffset === undefined ? {} : { busOffset: options.busOffset }),
  };
  const hostBridges: HostBridgeSpec[] = [hb0];
  const rootPorts: RootPortSpec[] = [{ id: "rp0" }, { id: "rp1" }];
  const endpoints: EndpointSpec[] = [
    { bdf: TestBdf.CLIENT, parent: "sw0.dp0", ...options.client },
    { bdf: TestBdf.SWITCH_PEER, parent: "sw0.dp1", ...options.switchPeer },
  ];
  if (options.switchSpare !== undefined) endpoints.push({ bdf: TestBdf.SWITCH_SPARE, parent: "sw0.dp2", ...options.switchSpare });
  endpoints.push({ bdf: TestBdf.BRIDGE_PEER, parent: "rp1", ...options.bridgePeer });
  if (options.farPeer !== undefined) {
    hostBridges.push({ id: "hb1" });
    rootPorts.push({ id: "rp2", hostBridge: "hb1" });
    endpoints.push({ bdf: TestBdf.FAR_PEER, parent: "rp2", ...options.farPeer });
  }
  if (options.rootPortDevice !== undefined) {
    rootPorts.push({ id: "rp3" });
    endpoints.push({ bdf: TestBdf.ROOT_PORT_DEVICE, parent: "rp3", ...options.rootPortDevice });
  }
  return {
    memory: {
      ramBytes: options.ramBytes ?? 2 ** 30,
      ...(options.confidential === undefined ? {} : { confidential: options.confidential }),
    },
    ...(options.iommu === false ? {} : { iommu: {} }),
    hostBridges,
    rootPorts,
    switches: [{ id: "sw0", parent: "rp0", downstreamPorts: options.switchPorts ?? 3 }],
    endpoints,
  };
}

