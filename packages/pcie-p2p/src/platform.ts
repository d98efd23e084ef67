import { Iommu, type IommuOptions } from "@dmasim/iommu";
import { PhysicalMemory, SparseStore, type PhysAddr, unsafePhysAddr } from "@dmasim/memory";
import { Trace } from "@dmasim/trace";
import type { TraceEvent } from "./events.js";
import { placeBars } from "./bars.js";
import { describeTopology } from "./describe.js";
import { PlatformSpecError, PciError, PciInputError } from "./errors.js";
import { Fabric, type DmaAccessObserver, type FabricContext } from "./fabric.js";
import { WHITELIST, calcMapTypeAndDist, type PciP2pdmaMapType } from "./p2pdma.js";
import { ProviderRegistry } from "./provider.js";
import { RangeTable, buildRoutes, commonUpstreamBridge, routesDirect, tlpHops, type BarRange } from "./routing.js";
import type { PlatformSpec } from "./spec.js";
import { Topology } from "./topology.js";
import type { Bar, BusAddr, Endpoint, HostBridgeInfo, P2pdmaExplanation, P2pdmaProvider, Platform } from "./types.js";
import type { DmaAddr } from "./dma-addr.js";
import type { ResolvedIommu } from "./resolved.js";
import { resolveSpec } from "./validate.js";
import { at } from "./util.js";

class PciEndpoint implements Endpoint {
  readonly #fabric: Fabric;
  constructor(
    readonly bdf: string,
    readonly untrusted: boolean,
    readonly bars: readonly Bar[],
    readonly iommu: Iommu | undefined,
    readonly parent: string,
    readonly hostBridge: HostBridgeInfo,
    fabric: Fabric,
  ) {
    this.#fabric = fabric;
  }
  dmaRead(addr: DmaAddr | BusAddr, len: number): Uint8Array {
    return this.#fabric.read(addr, len);
  }
  dmaReadInto(addr: DmaAddr | BusAddr, dst: Uint8Array): void {
    this.#fabric.readInto(addr, dst);
  }
  dmaWrite(addr: DmaAddr | BusAddr, bytes: Uint8Array): void {
    this.#fabric.write(addr, bytes);
  }
}

function makeIommu(trace: Trace, u: ResolvedIommu, path: string): Iommu {
  const opts: IommuOptions = { name: u.name };
  if (u.iotlbEntries !== undefined) opts.iotlbEntries = u.iotlbEntries;
  if (u.iotlbWays !== undefined) opts.iotlbWays = u.iotlbWays;
  if (u.pgsizeBitmap !== undefined) opts.pgsizeBitmap = u.pgsizeBitmap;
  if (u.requiresSyncMap !== undefined) opts.requiresSyncMap = u.requiresSyncMap;
  if (u.vaBits !== undefined) opts.vaBits = u.vaBits;
  try {
    return new Iommu(trace, opts);
  } catch (e) {
    throw new PlatformSpecError(path, u, `options the IOMMU accepts (${e instanceof Error ? e.message : String(e)})`);
  }
}

class PciPlatform implements Platform {
  readonly trace: Trace<TraceEvent>;
  readonly memory: PhysicalMemory;
  readonly iommus: readonly Iommu[];
  readonly endpoints: readonly Endpoint[];
  readonly hostBridges: readonly HostBridgeInfo[];
  readonly cpuSupportsP2pdma: boolean;
  readonly #topo: Topology;
  readonly #whitelist: Uint8Array;
  readonly #byBdf = new Map<string, number>();
  readonly #providers: ProviderRegistry;
  readonly #observer: { current: DmaAccessObserver | undefined } = { current: undefined };

  constructor(spec: PlatformSpec) {
    const r = resolveSpec(spec);
    const topo = new Topology(r);
    const epHostBridge = Array.from(topo.endpointNode, (n) => at(topo.hostBridge, n)); // host bridges are nodes 0..H-1
    const layout = placeBars(r, epHostBridge);
    const traceOptions: { recordEvents?: boolean; eventCapacity?: number } = { recordEvents: r.recordEvents };
    if (r.eventCapacity !== undefined) traceOptions.eventCapacity = r.eventCapacity;
    const trace = new Trace<TraceEvent>(traceOptions);
    const iommus = r.iommus.map((u, i) => makeIommu(trace, u, Array.isArray(spec.iommu) ? `iommu[${i}]` : "iommu"));
    const memory = new PhysicalMemory(trace, { ram: r.ram.map((x) => ({ base: x.base, size: x.size, name: x.name })), confidential: r.confidential });
    this.trace = trace;
    this.memory = memory;
    this.iommus = iommus;
    this.cpuSupportsP2pdma = r.cpuSupportsP2pdma;
    this.#topo = topo;
    this.#whitelist = new Uint8Array(topo.size);
    r.hostBridges.forEach((h, i) => (this.#whitelist[i] = WHITELIST[h.p2p]));
    this.hostBridges = r.hostBridges.map((h, i) => {
      const w = at(layout.windows, i);
      return { id: h.id, p2p: h.p2p, busOffset: h.busOffset, window: { phys: w.base as PhysAddr, bus: (w.base + h.busOffset) as BusAddr, size: w.size } };
    });

    const barRanges: BarRange[] = [];
    const bars: Bar[][] = r.endpoints.map((e, i) => {
      const hb = at(this.hostBridges, at(epHostBridge, i));
      return at(layout.bars, i).map((b) => {
        memory.addMmio(unsafePhysAddr(b.phys), b.size, { name: `${e.bdf} BAR${b.index}`, owner: e.bdf, backing: new SparseStore(b.size) });
        barRanges.push({ endpoint: i, phys: b.phys, bus: b.phys + hb.busOffset, size: b.size });
        return Object.freeze({ index: b.index, phys: b.phys as PhysAddr, bus: (b.phys + hb.busOffset) as BusAddr, size: b.size });
      });
    });
    const routes = buildRoutes(topo, this.#whitelist, r.cpuSupportsP2pdma, barRanges);
    const ctx: FabricContext = {
      observer: this.#observer,
      trace,
      memory,
      routes,
      ram: new RangeTable(r.ram.map((x) => ({ start: x.base, size: x.size, endpoint: -1, delta: 0 }))),
      endpointCount: r.endpoints.length,
      bdfs: r.endpoints.map((e) => e.bdf),
      route: routeForTrace(topo, r.endpoints.map((e, i) => {
        const unit = e.iommu ?? at(r.hostBridges, at(epHostBridge, i)).iommu;
        return unit >= 0 ? iommus[unit]?.name : undefined;
      })),
    };
    this.endpoints = r.endpoints.map((e, i) => {
      const hbIndex = at(epHostBridge, i);
      const unit = e.iommu ?? at(r.hostBridges, hbIndex).iommu;
      const iommu = unit >= 0 ? iommus[unit] : undefined;
      this.#byBdf.set(e.bdf, i);
      return new PciEndpoint(e.bdf, e.untrusted, Object.freeze(at(bars, i)), iommu, e.parent, at(this.hostBridges, hbIndex), new Fabric(ctx, i, iommu));
    });
    this.#providers = new ProviderRegistry(memory, this.endpoints.length);
  }

  setDmaObserver(observer: DmaAccessObserver | undefined): void {
    this.#observer.current = observer;
  }

  get dmaObserver(): DmaAccessObserver | undefined {
    return this.#observer.current;
  }

  #index(bdf: string, op: string): number {
    const i = this.#byBdf.get(bdf);
    if (i === undefined) {
      throw new PciError("ENODEV", `${op}: bdf = ${JSON.stringify(bdf)} is invalid: expected the BDF of an endpoint of this platform (${[...this.#byBdf.keys()].join(", ") || "none"})`);
    }
    return i;
  }

  endpoint(bdf: string): Endpoint {
    return at(this.endpoints, this.#index(bdf, "endpoint"));
  }

  iommuFor(bdf: string): Iommu | undefined {
    return at(this.endpoints, this.#index(bdf, "iommuFor")).iommu;
  }

  addP2pdmaProvider(bdf: string, bar: number, options: { offset?: number; size?: number } = {}): P2pdmaProvider {
    const ep = at(this.endpoints, this.#index(bdf, "addP2pdmaProvider"));
    return this.#providers.add(ep, bar, options);
  }

  providerById(id: number): P2pdmaProvider | undefined {
    return this.#providers.byId(id);
  }

  get providers(): readonly P2pdmaProvider[] {
    return this.#providers.list();
  }

  #decide(provider: P2pdmaProvider, client: string, op: string): { type: PciP2pdmaMapType; dist: number; acsRedirect: readonly number[] } {
    const c = this.#index(client, op);
    const p = this.#providers.check(provider, op);
    const o = this.#index(p.owner, op);
    return calcMapTypeAndDist(this.#topo, this.#whitelist, this.cpuSupportsP2pdma, at(this.#topo.endpointNode, o), at(this.#topo.endpointNode, c));
  }

  pciP2pdmaMapType(provider: P2pdmaProvider, client: string): PciP2pdmaMapType {
    const c = this.#index(client, "pciP2pdmaMapType");
    const cached = this.#providers.cachedType(provider, c, "pciP2pdmaMapType");
    if (cached !== 0) return cached as PciP2pdmaMapType;
    const { type } = this.#decide(provider, client, "pciP2pdmaMapType");
    this.#providers.cacheType(provider, c, type);
    return type;
  }

  pciP2pdmaDistance(provider: P2pdmaProvider, clients: readonly string[]): number {
    const list: unknown = clients;
    if (!Array.isArray(list)) throw new PciInputError("pciP2pdmaDistance", "clients", list, "an array of BDFs");
    this.#providers.check(provider, "pciP2pdmaDistance");
    for (const c of clients) this.#index(c, "pciP2pdmaDistance");
    if (clients.length === 0) return -1;
    let total = 0;
    for (const c of clients) {
      const { type, dist } = this.#decide(provider, c, "pciP2pdmaDistance");
      if (type === 2) return -1; // PCI_P2PDMA_MAP_NOT_SUPPORTED
      total += dist;
    }
    return total;
  }

  pciP2pdmaExplain(provider: P2pdmaProvider, client: string): P2pdmaExplanation {
    const d = this.#decide(provider, client, "pciP2pdmaExplain");
    return { type: d.type, dist: d.dist, acsRedirect: d.acsRedirect.map((n) => at(this.#topo.ids, n)) };
  }

  describe(): string {
    return describeTopology(this.#topo, this.hostBridges, this.endpoints);
  }
}

/**
 * Builds a platform from a plain JSON spec: validates it (PlatformSpecError naming the field), lays out
 * BARs, creates memory, the IOMMU units and the fabric. Nothing is attached to the IOMMUs: a device
 * behind one is blocked until a domain is attached to it (the DMA layer attaches default domains).
 */
export function createPlatform(spec: PlatformSpec): Platform {
  return new PciPlatform(spec);
}

/**
 * The trace's route of a TLP (FabricContext.route), memoized per requester, target and turnaround: the
 * hops from the topology, and whether ACS redirected a peer TLP that a shared switch could have turned.
 */
function routeForTrace(topo: Topology, iommuOf: readonly (string | undefined)[]): NonNullable<FabricContext["route"]> {
  const memo = new Map<string, { readonly hops: readonly string[]; readonly acsRedirect: boolean }>();
  return (requester, target, viaSwitch) => {
    const key = `${requester},${target},${viaSwitch ? 1 : 0}`;
    let r = memo.get(key);
    if (r === undefined) {
      const rn = at(topo.endpointNode, requester);
      const tn = target >= 0 ? at(topo.endpointNode, target) : -1;
      const acsRedirect = !viaSwitch && tn >= 0 && commonUpstreamBridge(topo, rn, tn) >= 0 && !routesDirect(topo, rn, tn);
      r = Object.freeze({ hops: Object.freeze(tlpHops(topo, rn, tn, viaSwitch, viaSwitch ? undefined : iommuOf[requester])), acsRedirect });
      memo.set(key, r);
    }
    return r;
  };
}
