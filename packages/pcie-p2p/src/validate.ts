import { bdfBus, isBdf } from "./bdf.js";
import type { ResolvedEndpoint, ResolvedHostBridge, ResolvedPort, ResolvedSpec } from "./resolved.js";
import type { PlatformSpec } from "./spec.js";
import { at, must } from "./util.js";
import { PAGE, MAX_ADDR, acs, arrayOf, checkKeys, fail, id, isObject, optBool, pageAligned } from "./validate-fields.js";
import { bars, iommus, memory, unitRef } from "./validate-parts.js";

export function resolveSpec(input: PlatformSpec): ResolvedSpec {
  const spec: unknown = input;
  if (!isObject(spec)) fail("", spec, "a platform spec object");
  checkKeys(spec, "", ["memory", "iommu", "cpuSupportsP2pdma", "hostBridges", "rootPorts", "switches", "endpoints", "trace"]);
  const { ram, confidential } = memory(spec);
  const units = iommus(spec);
  const cpuSupportsP2pdma = optBool(spec, "cpuSupportsP2pdma", "cpuSupportsP2pdma") ?? false;
  const trace = spec.trace;
  let recordEvents = false;
  let eventCapacity: number | undefined;
  if (trace !== undefined) {
    if (!isObject(trace)) fail("trace", trace, "an object { recordEvents?, eventCapacity? }");
    checkKeys(trace, "trace", ["recordEvents", "eventCapacity"]);
    recordEvents = optBool(trace, "recordEvents", "trace.recordEvents") ?? false;
    if (trace.eventCapacity !== undefined) {
      const c = trace.eventCapacity;
      if (typeof c !== "number" || !Number.isSafeInteger(c) || c < 1) fail("trace.eventCapacity", c, "a positive integer");
      eventCapacity = c;
    }
  }

  const used = new Map<string, string>(); // id → path, one namespace for bridges, ports and BDFs
  const claim = (name: string, path: string): void => {
    const prev = used.get(name);
    if (prev !== undefined) fail(path, name, `an id not already used (by ${prev})`);
    used.set(name, path);
  };

  const hostBridges: ResolvedHostBridge[] = [];
  arrayOf(spec.hostBridges, "hostBridges").forEach((h, i) => {
    const p = `hostBridges[${i}]`;
    if (!isObject(h)) fail(p, h, "an object { id, p2p?, busOffset?, mmio?, iommu? }");
    checkKeys(h, p, ["id", "p2p", "busOffset", "mmio", "iommu"]);
    const hid = id(h.id, `${p}.id`);
    claim(hid, `${p}.id`);
    const p2p = h.p2p ?? "none";
    if (p2p !== "none" && p2p !== "same-host-bridge" && p2p !== "any") fail(`${p}.p2p`, p2p, `"none", "same-host-bridge" or "any"`);
    const busOffset = h.busOffset ?? 0;
    if (typeof busOffset !== "number" || !Number.isSafeInteger(busOffset) || busOffset % PAGE !== 0) {
      fail(`${p}.busOffset`, busOffset, "an integer multiple of 4096 (may be negative)");
    }
    let mmio: ResolvedHostBridge["mmio"];
    if (h.mmio !== undefined) {
      const w = h.mmio;
      if (!isObject(w)) fail(`${p}.mmio`, w, "an object { base, size }");
      checkKeys(w, `${p}.mmio`, ["base", "size"]);
      const base = pageAligned(w.base, `${p}.mmio.base`, "a physical address", 0);
      const size = pageAligned(w.size, `${p}.mmio.size`, "a size", 1);
      if (base + size > MAX_ADDR) fail(`${p}.mmio.size`, size, "a window ending below 2^53");
      if (base + busOffset < 0 || base + size + busOffset > MAX_ADDR) {
        fail(`${p}.busOffset`, busOffset, `an offset keeping bus addresses of the window [${base}, ${base + size}) in 0..2^53`);
      }
      mmio = { base, size };
    }
    const iommu = h.iommu === undefined ? (units.length > 0 ? 0 : -1) : unitRef(h.iommu, `${p}.iommu`, units);
    hostBridges.push({ id: hid, path: p, p2p, busOffset, mmio, iommu });
  });
  const defaultHostBridge = (): string => {
    if (hostBridges.length === 0) {
      claim("hb0", "hostBridges (default)");
      hostBridges.push({ id: "hb0", path: "hostBridges (default hb0)", p2p: "none", busOffset: 0, mmio: undefined, iommu: units.length > 0 ? 0 : -1 });
    }
    return at(hostBridges, 0).id;
  };

  const ports: ResolvedPort[] = [];
  arrayOf(spec.rootPorts, "rootPorts").forEach((r, i) => {
    const p = `rootPorts[${i}]`;
    if (!isObject(r)) fail(p, r, "an object { id, hostBridge?, acs? }");
    checkKeys(r, p, ["id", "hostBridge", "acs"]);
    const rid = id(r.id, `${p}.id`);
    claim(rid, `${p}.id`);
    let parent: string;
    if (r.hostBridge === undefined) parent = defaultHostBridge();
    else {
      parent = id(r.hostBridge, `${p}.hostBridge`);
      if (!hostBridges.some((h) => h.id === parent)) fail(`${p}.hostBridge`, parent, `a host bridge id (${hostBridges.map((h) => h.id).join(", ") || "none defined"})`);
    }
    ports.push({ id: rid, path: p, kind: "root-port", parent, acs: acs(r.acs, `${p}.acs`) });
  });

  const implicitRootPort = (rid: string, path: string): string => {
    if (!ports.some((q) => q.id === rid)) {
      const hb = defaultHostBridge();
      claim(rid, path);
      ports.push({ id: rid, path, kind: "root-port", parent: hb, acs: 0 });
    }
    return rid;
  };

  const switchParents: { path: string; parent: string | undefined; up: string }[] = [];
  arrayOf(spec.switches, "switches").forEach((s, i) => {
    const p = `switches[${i}]`;
    if (!isObject(s)) fail(p, s, "an object { id, parent?, downstreamPorts, acs?, upstreamAcs? }");
    checkKeys(s, p, ["id", "parent", "upstreamAcs", "acs", "downstreamPorts"]);
    const sid = id(s.id, `${p}.id`);
    claim(sid, `${p}.id`);
    const up = `${sid}.up`;
    claim(up, `${p} (upstream port)`);
    const parent = s.parent === undefined ? undefined : id(s.parent, `${p}.parent`);
    ports.push({ id: up, path: p, kind: "switch-upstream", parent: parent ?? "", acs: acs(s.upstreamAcs, `${p}.upstreamAcs`) });
    switchParents.push({ path: `${p}.parent`, parent, up });
    const dflt = acs(s.acs, `${p}.acs`);
    const dps = s.downstreamPorts;
    let list: readonly (string | Record<string, unknown>)[];
    if (typeof dps === "number") {
      if (!Number.isInteger(dps) || dps < 1 || dps > 32) fail(`${p}.downstreamPorts`, dps, "a count 1..32 or a list of ports");
      list = Array.from({ length: dps }, (_, k) => `${sid}.dp${k}`);
    } else {
      if (!Array.isArray(dps) || dps.length === 0) fail(`${p}.downstreamPorts`, dps, "a count 1..32 or a non-empty list of ports");
      list = dps as (string | Record<string, unknown>)[];
    }
    list.forEach((d, k) => {
      const dp = `${p}.downstreamPorts[${k}]`;
      let did: string;
      let bits = dflt;
      if (typeof d === "string") did = id(d, dp);
      else {
        if (!isObject(d)) fail(dp, d, "a port id or { id, acs? }");
        checkKeys(d, dp, ["id", "acs"]);
        did = id(d.id, `${dp}.id`);
        if (d.acs !== undefined) bits = acs(d.acs, `${dp}.acs`);
      }
      claim(did, dp);
      ports.push({ id: did, path: dp, kind: "switch-downstream", parent: up, acs: bits });
    });
  });
  const isParentPort = (pid: string): boolean => ports.some((q) => q.id === pid && q.kind !== "switch-upstream");
  const parentPorts = (): string => ports.filter((q) => q.kind !== "switch-upstream").map((q) => q.id).join(", ") || "none defined";
  for (const sp of switchParents) {
    const port = must(ports.find((q) => q.id === sp.up), sp.up);
    let parent = sp.parent;
    if (parent === undefined) parent = implicitRootPort(`rp:${sp.up.slice(0, -3)}`, `${sp.path} (default root port)`);
    else if (!isParentPort(parent)) fail(sp.path, parent, `a root port or switch downstream port id (${parentPorts()})`);
    ports[ports.indexOf(port)] = { ...port, parent };
  }

  const endpoints: ResolvedEndpoint[] = [];
  arrayOf(spec.endpoints, "endpoints").forEach((e, i) => {
    const p = `endpoints[${i}]`;
    if (!isObject(e)) fail(p, e, "an object { bdf, parent?, untrusted?, iommu?, bars? }");
    checkKeys(e, p, ["bdf", "parent", "untrusted", "iommu", "bars"]);
    if (!isBdf(e.bdf)) fail(`${p}.bdf`, e.bdf, `a BDF "dddd:bb:dd.f" in lowercase hex with device <= 1f, e.g. "0000:01:00.0"`);
    const bdf = e.bdf;
    if (endpoints.some((x) => x.bdf === bdf)) fail(`${p}.bdf`, bdf, "a BDF no other endpoint has");
    claim(bdf, `${p}.bdf`);
    let parent: string;
    if (e.parent === undefined) parent = implicitRootPort(`rp:${bdfBus(bdf)}`, `${p} (default root port)`);
    else {
      parent = id(e.parent, `${p}.parent`);
      if (!isParentPort(parent)) fail(`${p}.parent`, parent, `a root port or switch downstream port id (${parentPorts()})`);
    }
    const untrusted = optBool(e, "untrusted", `${p}.untrusted`) ?? false;
    const iommu = e.iommu === undefined ? undefined : unitRef(e.iommu, `${p}.iommu`, units);
    endpoints.push({ bdf, path: p, parent, untrusted, iommu, bars: bars(e.bars, `${p}.bars`) });
  });

  defaultHostBridge(); // a platform always has one, even with no devices yet
  return { ram, confidential, iommus: units, cpuSupportsP2pdma, hostBridges, ports, endpoints, recordEvents, eventCapacity };
}
