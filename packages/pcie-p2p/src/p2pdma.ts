import { ACS_REDIR_MASK } from "./acs.js";
import type { HostBridgeP2p } from "./spec.js";
import type { Topology } from "./topology.js";
import { at } from "./util.js";

/** enum pci_p2pdma_map_type (include/linux/pci-p2pdma.h). */
export const PciP2pdmaMapType = { UNKNOWN: 0, NONE: 1, NOT_SUPPORTED: 2, BUS_ADDR: 3, THRU_HOST_BRIDGE: 4 } as const;
export type PciP2pdmaMapType = (typeof PciP2pdmaMapType)[keyof typeof PciP2pdmaMapType];

/** Host-bridge whitelist state per node index (only host-bridge nodes are read). */
export const WHITELIST = { none: 0, "same-host-bridge": 1, any: 2 } as const satisfies Record<HostBridgeP2p, number>;

export interface MapTypeAndDist {
  /** How the client must address the provider: a bus address, through the host bridge, or not at all. */
  readonly type: PciP2pdmaMapType;
  /** dist_a + dist_b of the walk: 0 for the same device, 4 for two devices on one switch. */
  readonly dist: number;
  /** Nodes whose ACS redirect bits were found on the path (the kernel prints them for disable_acs_redir). */
  readonly acsRedirect: readonly number[];
}

/**
 * host_bridge_whitelist(): a listed bridge forwards between its own ports; between two bridges both must
 * be listed without REQ_SAME_HOST_BRIDGE.
 */
export function hostBridgeWhitelist(topo: Topology, whitelist: Uint8Array, a: number, b: number): boolean {
  const ha = at(topo.hostBridge, a);
  const hb = at(topo.hostBridge, b);
  if (ha === hb) return whitelist[ha] !== WHITELIST.none;
  return whitelist[ha] === WHITELIST.any && whitelist[hb] === WHITELIST.any;
}

/**
 * calc_map_type_and_dist() of drivers/pci/p2pdma.c, step for step: walk up from the provider; for each
 * bridge on the way, look for it among the client's upstream bridges. Finding one (the nearest common
 * upstream bridge) means bus-address P2P unless a bridge on the path has ACS RR, CR or EC set — the
 * provider side counts bridges up to and including the common one, the client side up to and excluding
 * it, exactly as the kernel's two loops do. No common bridge (separate root ports) or an ACS redirect
 * leaves the host bridge: allowed (THRU_HOST_BRIDGE) only when the CPU supports P2P or the bridges are
 * on the whitelist.
 */
export function calcMapTypeAndDist(
  topo: Topology,
  whitelist: Uint8Array,
  cpuSupportsP2pdma: boolean,
  provider: number,
  client: number,
): MapTypeAndDist {
  const acsRedirect: number[] = [];
  let distA = 0;
  let distB = 0;
  let common = -1;
  for (let a = provider; a >= 0; a = topo.upstreamBridge(a)) {
    distB = 0;
    if ((at(topo.acs, a) & ACS_REDIR_MASK) !== 0) acsRedirect.push(a);
    let bb = client;
    while (bb >= 0 && bb !== a) {
      bb = topo.upstreamBridge(bb);
      distB++;
    }
    if (bb === a) {
      common = a;
      break;
    }
    distA++;
  }
  const dist = distA + distB;
  if (common >= 0) {
    for (let bb = client; bb !== common; bb = topo.upstreamBridge(bb)) {
      if ((at(topo.acs, bb) & ACS_REDIR_MASK) !== 0) acsRedirect.push(bb);
    }
    if (acsRedirect.length === 0) return { type: PciP2pdmaMapType.BUS_ADDR, dist, acsRedirect };
  }
  if (!cpuSupportsP2pdma && !hostBridgeWhitelist(topo, whitelist, provider, client)) {
    return { type: PciP2pdmaMapType.NOT_SUPPORTED, dist, acsRedirect };
  }
  return { type: PciP2pdmaMapType.THRU_HOST_BRIDGE, dist, acsRedirect };
}
