import { PciAcs } from "./acs.js";
import { hostBridgeWhitelist } from "./p2pdma.js";
import { NodeKind, type Topology } from "./topology.js";
import { at } from "./util.js";

/** ACS bits at the ingress port that keep a request from turning towards a peer (RR, and EC as "block all"). */
const REQUEST_REDIRECT = PciAcs.RR | PciAcs.EC;

/** Sorted, non-overlapping address ranges with the endpoint and delta (address - phys) of each. */
export class RangeTable {
  readonly start: Float64Array;
  readonly end: Float64Array;
  readonly endpoint: Int32Array;
  /** Subtract from an address in the range to get the CPU physical address (the bus offset for bus ranges). */
  readonly delta: Float64Array;

  constructor(ranges: readonly { start: number; size: number; endpoint: number; delta: number }[]) {
    const sorted = [...ranges].sort((a, b) => a.start - b.start);
    this.start = Float64Array.from(sorted, (r) => r.start);
    this.end = Float64Array.from(sorted, (r) => r.start + r.size);
    this.endpoint = Int32Array.from(sorted, (r) => r.endpoint);
    this.delta = Float64Array.from(sorted, (r) => r.delta);
  }

  get length(): number {
    return this.start.length;
  }

  /** Index of the range holding `addr`, or -1. Binary search: a handful of BARs, every TLP. */
  find(addr: number): number {
    let lo = 0;
    let hi = this.start.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (addr < (this.start[mid] ?? 0)) hi = mid - 1;
      else if (addr >= (this.end[mid] ?? 0)) lo = mid + 1;
      else return mid;
    }
    return -1;
  }
}

/**
 * The lowest common upstream bridge of two nodes, or -1 when their paths meet only at the host bridge
 * (or never): the point where a switch can turn a request around towards the peer.
 */
export function commonUpstreamBridge(topo: Topology, a: number, b: number): number {
  for (let x = a; x >= 0; x = topo.upstreamBridge(x)) {
    for (let y = b; y >= 0; y = topo.upstreamBridge(y)) if (x === y) return x;
  }
  return -1;
}

/**
 * Whether a request from `requester` to an address in `target`'s BAR turns around below the root
 * complex. Hardware applies ACS at the port where the request enters the switch that would turn it: the
 * downstream port on the requester's side of the common switch, or the common port itself when both
 * functions sit on one link. RR there (or EC, modelled as blocking all peer egress) sends it upstream.
 * Ports lower down see the request heading upstream anyway and do not redirect it.
 */
export function routesDirect(topo: Topology, requester: number, target: number): boolean {
  if (requester === target) return true; // a function reaching its own BAR never leaves the device
  const common = commonUpstreamBridge(topo, requester, target);
  if (common < 0) return false;
  let ingress = common;
  if (topo.kind[common] === NodeKind.SWITCH_UPSTREAM) {
    ingress = requester;
    while (topo.upstreamBridge(ingress) !== common) ingress = topo.upstreamBridge(ingress);
  }
  return (at(topo.acs, ingress) & REQUEST_REDIRECT) === 0;
}

export interface BarRange {
  readonly endpoint: number;
  readonly phys: number;
  readonly bus: number;
  readonly size: number;
}

/** Per-requester tables the fabric consults for every TLP. */
export interface Routes {
  /** Bus ranges each endpoint reaches through a switch, without the root complex. */
  readonly direct: readonly RangeTable[];
  /** Every BAR by CPU physical address: what a translated address may hit besides RAM. */
  readonly barsByPhys: RangeTable;
  /** canRouteViaHostBridge[requester * n + target]: the root complex forwards between them. */
  readonly viaHostBridge: Uint8Array;
}

export function buildRoutes(
  topo: Topology,
  whitelist: Uint8Array,
  cpuSupportsP2pdma: boolean,
  bars: readonly BarRange[],
): Routes {
  const n = topo.endpointNode.length;
  const direct: RangeTable[] = [];
  for (let r = 0; r < n; r++) {
    const rn = at(topo.endpointNode, r);
    const reach = bars.filter((b) => routesDirect(topo, rn, at(topo.endpointNode, b.endpoint)));
    direct.push(new RangeTable(reach.map((b) => ({ start: b.bus, size: b.size, endpoint: b.endpoint, delta: b.bus - b.phys }))));
  }
  const barsByPhys = new RangeTable(bars.map((b) => ({ start: b.phys, size: b.size, endpoint: b.endpoint, delta: 0 })));
  const viaHostBridge = new Uint8Array(n * n);
  for (let r = 0; r < n; r++) {
    for (let t = 0; t < n; t++) {
      const ok = cpuSupportsP2pdma || hostBridgeWhitelist(topo, whitelist, at(topo.endpointNode, r), at(topo.endpointNode, t));
      viaHostBridge[r * n + t] = ok ? 1 : 0;
    }
  }
  return { direct, barsByPhys, viaHostBridge };
}

/** The nodes from `node` up to its host bridge, `node` first (ids as the topology names them). */
function upChain(topo: Topology, node: number): number[] {
  const chain: number[] = [];
  for (let x = node; x >= 0; x = at(topo.parent, x)) chain.push(x);
  return chain;
}

/**
 * The hops of a TLP, for the trace: the requester, every port it crosses, and where it lands. `target` is
 * a peer's endpoint node, or -1 for memory. A turnaround in a switch (`viaSwitch`) goes up to the lowest
 * switch port both share and down again; anything else goes up to the host bridge, through the IOMMU
 * (named `iommu` when the requester has one), and to RAM or down the peer's side.
 */
export function tlpHops(topo: Topology, requester: number, target: number, viaSwitch: boolean, iommu: string | undefined): string[] {
  const up = upChain(topo, requester);
  const down = target >= 0 ? upChain(topo, target) : [];
  const ids = topo.ids;
  if (viaSwitch && target >= 0) {
    const common = commonUpstreamBridge(topo, requester, target);
    const upTo = up.indexOf(common);
    const downFrom = down.indexOf(common);
    if (upTo >= 0 && downFrom >= 0) {
      return [...up.slice(0, upTo + 1), ...down.slice(0, downFrom).reverse()].map((n) => at(ids, n));
    }
  }
  const hops = up.map((n) => at(ids, n));
  if (iommu !== undefined) hops.push(iommu);
  if (target < 0) {
    hops.push("ram");
    return hops;
  }
  // Down from the target's host bridge (the same one, or another the root complex forwards to).
  const hb = down.length - 1;
  if (down[hb] !== up[up.length - 1]) hops.push(at(ids, at(down, hb)));
  for (let i = hb - 1; i >= 0; i--) hops.push(at(ids, at(down, i)));
  return hops;
}
