import { acsToString } from "./acs.js";
import { hex } from "@dmasim/trace";

import { NodeKind, type Topology } from "./topology.js";
import type { Endpoint, HostBridgeInfo } from "./types.js";
import { at, must } from "./util.js";

const KIND_NAME = ["host bridge", "root port", "switch upstream port", "switch downstream port", "endpoint"] as const;

function size(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let u = 0;
  while (n >= 1024 && n % 1024 === 0 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${n} ${at(units, u)}`;
}

/** A text picture of the tree: one node per line, with ACS bits, IOMMU units and BARs. */
export function describeTopology(topo: Topology, hostBridges: readonly HostBridgeInfo[], endpoints: readonly Endpoint[]): string {
  const children: number[][] = Array.from({ length: topo.size }, () => []);
  for (let i = 0; i < topo.size; i++) if (at(topo.parent, i) >= 0) at(children, at(topo.parent, i)).push(i);
  const epByNode = new Map<number, Endpoint>();
  endpoints.forEach((e, i) => epByNode.set(at(topo.endpointNode, i), e));
  const lines: string[] = [];
  const label = (n: number): string => {
    const kind = at(topo.kind, n);
    const parts = [at(topo.ids, n), KIND_NAME[kind]];
    if (kind === NodeKind.HOST_BRIDGE) {
      const h = at(hostBridges, n);
      parts.push(`p2p ${h.p2p}`, `window ${hex(h.window.phys)}+${size(h.window.size)}`);
      if (h.busOffset !== 0) parts.push(`busOffset ${h.busOffset}`);
    } else if (kind !== NodeKind.ENDPOINT) {
      if (topo.acs[n] !== 0) parts.push(`ACS ${acsToString(at(topo.acs, n))}`);
      if (topo.externalFacing[n] === 1) parts.push("external-facing");
    } else {
      const e = must(epByNode.get(n), `endpoint of node ${n}`);
      if (e.untrusted) parts.push("untrusted");
      parts.push(e.iommu === undefined ? "no IOMMU" : e.iommu.name);
      for (const b of e.bars) parts.push(`BAR${b.index} ${hex(b.phys)} (bus ${hex(b.bus)}) ${size(b.size)}`);
    }
    return parts.join(", ");
  };
  const walk = (n: number, prefix: string, last: boolean, root: boolean): void => {
    lines.push(root ? label(n) : `${prefix}${last ? "└─ " : "├─ "}${label(n)}`);
    const kids = at(children, n);
    const next = root ? "" : `${prefix}${last ? "   " : "│  "}`;
    kids.forEach((k, i) => {
      walk(k, next, i === kids.length - 1, false);
    });
  };
  for (let i = 0; i < topo.size; i++) if (topo.kind[i] === NodeKind.HOST_BRIDGE) walk(i, "", true, true);
  return lines.join("\n");
}
