import type { PlatformSpec } from "@dmasim/pcie-p2p";
import { field, num, str, type LogEvent } from "./events.js";

/** What a node of the PCIe tree is. */
export type TopoKind = "memory" | "iommu" | "host-bridge" | "root-port" | "switch" | "port" | "endpoint";

/** One node of the topology drawing. */
export interface TopoNode {
  readonly id: string;
  readonly kind: TopoKind;
  /** The node above it (undefined for host bridges, RAM and the IOMMU). */
  readonly parent: string | undefined;
  /** ACS controls enabled on this port (`RR CR …`), empty when none. */
  readonly acs: string;
  /** BARs of an endpoint: bus and CPU physical base and size. */
  readonly bars: readonly { readonly bus: number; readonly phys: number; readonly size: number }[];
  /** An endpoint whose DMA goes through an IOMMU. */
  readonly behindIommu: boolean;
}

/** The topology of a platform as plain data. */
export interface Topology {
  readonly nodes: readonly TopoNode[];
}

/** What the page reads from a built platform's endpoints (the Platform's `endpoints`). */
export interface EndpointInfo {
  readonly bdf: string;
  readonly parent: string;
  readonly hostBridge: { readonly id: string };
  readonly bars: readonly { readonly bus: number; readonly phys: number; readonly size: number }[];
  readonly iommu: unknown;
}

function acsText(acs: Readonly<Record<string, boolean | undefined>> | undefined): string {
  if (acs === undefined) return "";
  return Object.entries(acs)
    .filter(([, on]) => on === true)
    .map(([k]) => k.toUpperCase())
    .join(" ");
}

/**
 * The topology of a platform from its spec (ports, switches, ACS) and its built endpoints (resolved
 * parents, host bridges, BAR addresses).
 */
export function topologyOf(spec: PlatformSpec, endpoints: readonly EndpointInfo[], hostBridges: readonly { readonly id: string }[]): Topology {
  const nodes: TopoNode[] = [];
  const add = (id: string, kind: TopoKind, parent: string | undefined, acs = "", extra: Partial<TopoNode> = {}): void => {
    nodes.push({ id, kind, parent, acs, bars: [], behindIommu: false, ...extra });
  };
  add("RAM", "memory", undefined);
  if (spec.iommu !== undefined) add("IOMMU", "iommu", undefined);
  const defaultHb = hostBridges[0]?.id ?? "hb0";
  for (const hb of hostBridges) add(hb.id, "host-bridge", undefined);
  for (const rp of spec.rootPorts ?? []) add(rp.id, "root-port", rp.hostBridge ?? defaultHb, acsText(rp.acs));
  for (const sw of spec.switches ?? []) {
    add(sw.id, "switch", sw.parent ?? defaultHb, acsText(sw.upstreamAcs));
    const ports = typeof sw.downstreamPorts === "number" ? Array.from({ length: sw.downstreamPorts }, (_, i) => `${sw.id}.dp${i}`) : sw.downstreamPorts.map((p) => (typeof p === "string" ? p : p.id));
    const portAcs = (i: number): string => {
      const p = typeof sw.downstreamPorts === "number" ? undefined : sw.downstreamPorts[i];
      return acsText(typeof p === "object" ? (p.acs ?? sw.acs) : sw.acs);
    };
    ports.forEach((p, i) => {
      add(p, "port", sw.id, portAcs(i));
    });
  }
  const known = new Set(nodes.map((n) => n.id));
  for (const ep of endpoints) {
    // An endpoint the spec places on no port hangs off a root port the platform made for it.
    if (!known.has(ep.parent) && ep.parent !== ep.hostBridge.id) {
      add(ep.parent, "root-port", ep.hostBridge.id);
      known.add(ep.parent);
    }
    const parent = ep.parent;
    add(ep.bdf, "endpoint", parent, "", { bars: ep.bars.map((b) => ({ bus: b.bus, phys: b.phys, size: b.size })), behindIommu: ep.iommu !== undefined });
  }
  return { nodes };
}

function byId(topo: Topology): Map<string, TopoNode> {
  return new Map(topo.nodes.map((n) => [n.id, n]));
}

/** The chain from a node up to its host bridge, the node first. */
export function upChain(topo: Topology, id: string): string[] {
  const m = byId(topo);
  const out: string[] = [];
  for (let n = m.get(id); n !== undefined; n = n.parent === undefined ? undefined : m.get(n.parent)) {
    out.push(n.id);
    if (out.length > 64) break;
  }
  return out;
}

/** The endpoint whose BAR holds `addr` as a bus address (or, with `phys`, as a CPU physical address). */
export function barOwner(topo: Topology, addr: number, phys = false): string | undefined {
  for (const n of topo.nodes) {
    for (const b of n.bars) {
      const base = phys ? b.phys : b.bus;
      if (addr >= base && addr < base + b.size) return n.id;
    }
  }
  return undefined;
}

/**
 * The nodes a TLP crosses, in order: up from the device, then to RAM (through the IOMMU when the device
 * is behind one), or across to the peer whose BAR it targets: turning around in the lowest switch they
 * share, or through the host bridge (and the IOMMU, which translates the address first). `translate`
 * maps an IOVA to a physical address (the replay's mapping) for a peer reached through the IOMMU.
 */
export function routeOf(topo: Topology, e: LogEvent, translate: (iova: number) => number | undefined = () => undefined): string[] {
  const hops = field(e, "hops");
  if (Array.isArray(hops)) return hopsToNodes(topo, hops.filter((x): x is string => typeof x === "string"));
  const device = str(e, "device");
  if (device === undefined) return [];
  const up = upChain(topo, device);
  const node = byId(topo).get(device);
  const viaIommu = node?.behindIommu === true && topo.nodes.some((n) => n.kind === "iommu");
  const path = str(e, "path");
  const addr = num(e, "addr") ?? 0;
  if (e.type === "unsupported-request") return [...up, ...(viaIommu ? ["IOMMU"] : [])];
  if (path === "memory") return [...up, ...(viaIommu ? ["IOMMU"] : []), "RAM"];
  let target = barOwner(topo, addr);
  if (target === undefined) {
    const phys = translate(addr);
    if (phys !== undefined) target = barOwner(topo, phys, true);
  }
  if (target === undefined) return up;
  const down = upChain(topo, target);
  if (path === "peer-via-switch") {
    const common = up.findIndex((id) => down.includes(id));
    if (common < 0) return [...up, ...down.reverse()];
    const at = down.indexOf(up[common] ?? "");
    return [...up.slice(0, common + 1), ...down.slice(0, at).reverse()];
  }
  // Through the host bridge: up to the root complex, the IOMMU when translated, then down to the peer.
  return [...up, ...(viaIommu ? ["IOMMU"] : []), ...down.slice(0, -1).reverse()];
}

/**
 * The route a TLP event names itself (`hops`: requester, ports, host bridge, the translating IOMMU unit,
 * target), in this drawing's node ids: a switch's upstream port `sw0.up` is the switch box, the IOMMU
 * unit is "IOMMU", `ram` is "RAM". Repeats of one node next to each other collapse.
 */
export function hopsToNodes(topo: Topology, hops: readonly string[]): string[] {
  const ids = new Set(topo.nodes.map((n) => n.id));
  const out: string[] = [];
  for (const hop of hops) {
    let id = hop;
    if (hop === "ram") id = "RAM";
    else if (!ids.has(hop) && hop.endsWith(".up") && ids.has(hop.slice(0, -3))) id = hop.slice(0, -3);
    else if (!ids.has(hop) && /iommu/i.test(hop)) id = "IOMMU";
    if (out[out.length - 1] !== id) out.push(id);
  }
  return out;
}
