import { ACS_EXTERNAL_FACING } from "./acs.js";
import { PlatformSpecError } from "./errors.js";
import type { ResolvedSpec } from "./resolved.js";
import { at, must } from "./util.js";

export const NodeKind = { HOST_BRIDGE: 0, ROOT_PORT: 1, SWITCH_UPSTREAM: 2, SWITCH_DOWNSTREAM: 3, ENDPOINT: 4 } as const;
export type NodeKind = (typeof NodeKind)[keyof typeof NodeKind];

const KIND_OF = { "root-port": NodeKind.ROOT_PORT, "switch-upstream": NodeKind.SWITCH_UPSTREAM, "switch-downstream": NodeKind.SWITCH_DOWNSTREAM } as const;

/**
 * The PCI tree as parallel arrays indexed by node: host bridges, root ports, switch ports, endpoints.
 * `parent` is the tree edge; `upstreamBridge` is the kernel's pci_upstream_bridge(), which stops at the
 * root port (a root port sits on the root bus: it has no upstream bridge).
 */
export class Topology {
  readonly ids: readonly string[];
  readonly kind: Uint8Array;
  readonly parent: Int32Array;
  /** Effective ACS control bits per node (spec bits, plus external-facing bits above untrusted devices). */
  readonly acs: Uint16Array;
  /** Host-bridge node index of every node. */
  readonly hostBridge: Int32Array;
  /** Node index of endpoint i (spec order). */
  readonly endpointNode: Int32Array;
  /** Host-bridge node index of host bridge i (spec order). */
  readonly hostBridgeNode: Int32Array;
  /** Ports above an untrusted endpoint: their external-facing ACS comes from that, not the spec. */
  readonly externalFacing: Uint8Array;
  readonly #byId = new Map<string, number>();

  constructor(spec: ResolvedSpec) {
    const ids: string[] = [];
    const kinds: number[] = [];
    const parentIds: string[] = [];
    const acs: number[] = [];
    const paths: string[] = [];
    for (const h of spec.hostBridges) {
      ids.push(h.id);
      kinds.push(NodeKind.HOST_BRIDGE);
      parentIds.push("");
      acs.push(0);
      paths.push(h.path);
    }
    for (const p of spec.ports) {
      ids.push(p.id);
      kinds.push(KIND_OF[p.kind]);
      parentIds.push(p.parent);
      acs.push(p.acs);
      paths.push(`${p.path}.parent`);
    }
    for (const e of spec.endpoints) {
      ids.push(e.bdf);
      kinds.push(NodeKind.ENDPOINT);
      parentIds.push(e.parent);
      acs.push(0);
      paths.push(`${e.path}.parent`);
    }
    const n = ids.length;
    this.ids = ids;
    ids.forEach((id, i) => this.#byId.set(id, i));
    this.kind = Uint8Array.from(kinds);
    this.acs = Uint16Array.from(acs);
    this.parent = new Int32Array(n).fill(-1);
    for (let i = 0; i < n; i++) if (parentIds[i] !== "") this.parent[i] = this.#byId.get(at(parentIds, i)) ?? -1;
    this.hostBridge = new Int32Array(n).fill(-1);
    for (let i = 0; i < n; i++) {
      let x = i;
      let steps = 0;
      while (at(this.parent, x) >= 0) {
        x = at(this.parent, x);
        if (++steps > n) throw new PlatformSpecError(at(paths, i), parentIds[i], "a parent chain that reaches a host bridge (switches form a cycle)");
      }
      this.hostBridge[i] = x;
    }
    this.endpointNode = Int32Array.from(spec.endpoints, (e) => must(this.#byId.get(e.bdf), e.bdf));
    this.hostBridgeNode = Int32Array.from(spec.hostBridges, (h) => must(this.#byId.get(h.id), h.id));
    this.externalFacing = new Uint8Array(n);
    spec.endpoints.forEach((e, i) => {
      if (!e.untrusted) return;
      const port = at(this.parent, at(this.endpointNode, i));
      this.externalFacing[port] = 1;
      this.acs[port] = at(this.acs, port) | ACS_EXTERNAL_FACING;
    });
  }

  get size(): number {
    return this.ids.length;
  }

  indexOf(id: string): number {
    return this.#byId.get(id) ?? -1;
  }

  /** pci_upstream_bridge(): the bridge above a node, or -1 above a root port. */
  upstreamBridge(node: number): number {
    const p = at(this.parent, node);
    return p < 0 || this.kind[p] === NodeKind.HOST_BRIDGE ? -1 : p;
  }
}
