import type { InputIssue } from "@dmasim/trace";
import { acsBits } from "./acs.js";
import { bdfBus } from "./bdf.js";
import type { ResolvedBar, ResolvedEndpoint, ResolvedHostBridge, ResolvedIommu, ResolvedPort, ResolvedSpec } from "./resolved.js";
import type { BarSpec, EndpointSpec, HostBridgeSpec, IommuSpec, MemorySpec, RootPortSpec, SwitchSpec } from "./spec.js";
import { at, must } from "./util.js";

// The steps of resolveSpec that need more than one field: ids, references between parts, overlaps. Each
// step records every issue it finds and carries on with a usable value, so one run reports them all.

const MAX_ADDR = 2 ** 53;

/** What the steps share: the issues found so far and the one namespace of bridge, port and BDF ids. */
export class Resolver {
  readonly issues: InputIssue[] = [];
  readonly #used = new Map<string, string>(); // id → path

  fail(path: string, value: unknown, expected: string): void {
    this.issues.push({ path, value, expected });
  }

  /** Takes `name` for the part at `path`; false (and an issue) when another part has it. */
  claim(name: string, path: string): boolean {
    const prev = this.#used.get(name);
    if (prev !== undefined) {
      this.fail(path, name, `an id not already used (by ${prev})`);
      return false;
    }
    this.#used.set(name, path);
    return true;
  }
}

/** RAM regions, checked not to overlap (the schema checked each one). */
export function resolveRam(r: Resolver, m: MemorySpec): ResolvedSpec["ram"] {
  if (m.ramBytes !== undefined) return [{ base: 0, size: m.ramBytes, name: "System RAM" }];
  const ram = (m.ram ?? []).map((x, i) => ({ base: x.base, size: x.size, name: x.name ?? `System RAM ${i}`, path: `memory.ram[${i}]` }));
  const sorted = [...ram].sort((a, b) => a.base - b.base);
  for (let i = 1; i < sorted.length; i++) {
    const prev = at(sorted, i - 1);
    const cur = at(sorted, i);
    if (cur.base < prev.base + prev.size) r.fail(`${cur.path}.base`, cur.base, `a region not overlapping ${prev.path}`);
  }
  return ram.map(({ base, size, name }) => ({ base, size, name }));
}

/** IOMMU units, named by position unless given a name; names are unique. */
export function resolveIommus(r: Resolver, v: IommuSpec | readonly IommuSpec[] | undefined): ResolvedIommu[] {
  if (v === undefined) return [];
  const isList = Array.isArray(v);
  const list: readonly IommuSpec[] = isList ? v : [v as IommuSpec];
  const out: ResolvedIommu[] = [];
  list.forEach((u, i) => {
    const name = u.name ?? `iommu${i}`;
    if (out.some((o) => o.name === name)) r.fail(`${isList ? `iommu[${i}]` : "iommu"}.name`, name, "a name no other IOMMU unit has");
    out.push({ ...u, name });
  });
  return out;
}

/** The unit index `v` names: -1 for null (none). */
export function unitRef(r: Resolver, v: string | null, path: string, units: readonly ResolvedIommu[]): number {
  if (v === null) return -1;
  const i = units.findIndex((u) => u.name === v);
  if (i < 0) r.fail(path, v, units.length === 0 ? "null: the spec has no IOMMU" : `null or one of the IOMMU units (${units.map((u) => u.name).join(", ")})`);
  return i < 0 ? -1 : i;
}

/** Host bridges: ids claimed, bus addresses of an explicit window kept in 0..2^53, IOMMU units resolved. */
export function resolveHostBridges(r: Resolver, list: readonly HostBridgeSpec[], units: readonly ResolvedIommu[]): ResolvedHostBridge[] {
  return list.map((h, i) => {
    const p = `hostBridges[${i}]`;
    r.claim(h.id, `${p}.id`);
    const busOffset = h.busOffset ?? 0;
    const mmio = h.mmio === undefined ? undefined : { base: h.mmio.base, size: h.mmio.size };
    if (mmio !== undefined && (mmio.base + busOffset < 0 || mmio.base + mmio.size + busOffset > MAX_ADDR)) {
      r.fail(`${p}.busOffset`, busOffset, `an offset keeping bus addresses of the window [${mmio.base}, ${mmio.base + mmio.size}) in 0..2^53`);
    }
    const iommu = h.iommu === undefined ? (units.length > 0 ? 0 : -1) : unitRef(r, h.iommu, `${p}.iommu`, units);
    return { id: h.id, path: p, p2p: h.p2p ?? "none", busOffset, mmio, iommu };
  });
}

/**
 * The port tree: root ports, switches (an upstream port and its downstream ports) and the implicit root
 * ports that parentless switches and endpoints get. A platform always has a host bridge: "hb0" is added
 * when the spec names none.
 */
export class PortResolver {
  readonly ports: ResolvedPort[] = [];
  constructor(
    readonly r: Resolver,
    readonly hostBridges: ResolvedHostBridge[],
    readonly units: readonly ResolvedIommu[],
  ) {}

  defaultHostBridge(): string {
    if (this.hostBridges.length === 0) {
      this.r.claim("hb0", "hostBridges (default)");
      this.hostBridges.push({ id: "hb0", path: "hostBridges (default hb0)", p2p: "none", busOffset: 0, mmio: undefined, iommu: this.units.length > 0 ? 0 : -1 });
    }
    return at(this.hostBridges, 0).id;
  }

  rootPorts(list: readonly RootPortSpec[]): void {
    list.forEach((rp, i) => {
      const p = `rootPorts[${i}]`;
      this.r.claim(rp.id, `${p}.id`);
      let parent: string;
      if (rp.hostBridge === undefined) parent = this.defaultHostBridge();
      else {
        parent = rp.hostBridge;
        if (!this.hostBridges.some((h) => h.id === parent)) {
          this.r.fail(`${p}.hostBridge`, parent, `a host bridge id (${this.hostBridges.map((h) => h.id).join(", ") || "none defined"})`);
        }
      }
      this.ports.push({ id: rp.id, path: p, kind: "root-port", parent, acs: acsBits(rp.acs) });
    });
  }

  implicitRootPort(rid: string, path: string): string {
    if (!this.ports.some((q) => q.id === rid)) {
      const hb = this.defaultHostBridge();
      this.r.claim(rid, path);
      this.ports.push({ id: rid, path, kind: "root-port", parent: hb, acs: 0 });
    }
    return rid;
  }

  /** Switches; their parents are resolved once all are known, as one may hang below another listed later. */
  switches(list: readonly SwitchSpec[]): void {
    const parents: { path: string; parent: string | undefined; up: string }[] = [];
    list.forEach((s, i) => {
      const p = `switches[${i}]`;
      this.r.claim(s.id, `${p}.id`);
      const up = `${s.id}.up`;
      this.r.claim(up, `${p} (upstream port)`);
      this.ports.push({ id: up, path: p, kind: "switch-upstream", parent: s.parent ?? "", acs: acsBits(s.upstreamAcs) });
      parents.push({ path: `${p}.parent`, parent: s.parent, up });
      const dflt = acsBits(s.acs);
      const dps = typeof s.downstreamPorts === "number" ? Array.from({ length: s.downstreamPorts }, (_, k) => `${s.id}.dp${k}`) : s.downstreamPorts;
      dps.forEach((d, k) => {
        const dp = `${p}.downstreamPorts[${k}]`;
        const did = typeof d === "string" ? d : d.id;
        const bits = typeof d === "string" || d.acs === undefined ? dflt : acsBits(d.acs);
        this.r.claim(did, dp);
        this.ports.push({ id: did, path: dp, kind: "switch-downstream", parent: up, acs: bits });
      });
    });
    for (const sp of parents) {
      const port = must(this.ports.find((q) => q.id === sp.up && q.kind === "switch-upstream"), sp.up);
      let parent = sp.parent;
      if (parent === undefined) parent = this.implicitRootPort(`rp:${sp.up.slice(0, -3)}`, `${sp.path} (default root port)`);
      else this.checkParent(sp.path, parent);
      this.ports[this.ports.indexOf(port)] = { ...port, parent };
    }
  }

  /** A parent must be a root port or a switch downstream port (an upstream port has its one child). */
  checkParent(path: string, parent: string): void {
    if (!this.ports.some((q) => q.id === parent && q.kind !== "switch-upstream")) {
      const known = this.ports.filter((q) => q.kind !== "switch-upstream").map((q) => q.id).join(", ") || "none defined";
      this.r.fail(path, parent, `a root port or switch downstream port id (${known})`);
    }
  }
}

/** Endpoints: unique BDFs, their parents (a root port per domain and bus by default), units and BARs. */
export function resolveEndpoints(r: Resolver, t: PortResolver, list: readonly EndpointSpec[]): ResolvedEndpoint[] {
  const endpoints: ResolvedEndpoint[] = [];
  list.forEach((e, i) => {
    const p = `endpoints[${i}]`;
    const bdf = e.bdf;
    if (endpoints.some((x) => x.bdf === bdf)) r.fail(`${p}.bdf`, bdf, "a BDF no other endpoint has");
    else r.claim(bdf, `${p}.bdf`);
    let parent: string;
    if (e.parent === undefined) parent = t.implicitRootPort(`rp:${bdfBus(bdf)}`, `${p} (default root port)`);
    else {
      parent = e.parent;
      t.checkParent(`${p}.parent`, parent);
    }
    const iommu = e.iommu === undefined ? undefined : unitRef(r, e.iommu, `${p}.iommu`, t.units);
    endpoints.push({ bdf, path: p, parent, untrusted: e.untrusted ?? false, iommu, bars: resolveBars(r, e.bars ?? [], `${p}.bars`) });
  });
  return endpoints;
}

/** BARs of one endpoint: numbered by position unless given, each number used once. */
export function resolveBars(r: Resolver, list: readonly BarSpec[], path: string): ResolvedBar[] {
  const out: ResolvedBar[] = [];
  list.forEach((b, i) => {
    const p = `${path}[${i}]`;
    const index = b.index ?? i;
    if (out.some((o) => o.index === index)) r.fail(`${p}.index`, index, "a BAR number not used twice by one endpoint");
    out.push({ index, size: b.size, phys: b.phys, path: p });
  });
  return out;
}
