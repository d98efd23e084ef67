import type { Access, Iommu, Iova } from "@dmasim/iommu";
import { MAX_READ_BYTES, MmioNoBackingError, PageFlag, type PhysicalMemory, type PhysAddr } from "@dmasim/memory";
import { hex, type Trace } from "@dmasim/trace";
import { Counter } from "./counters.js";
import type { FabricPath, PcieP2pEvent } from "./events.js";
import type { DmaAddr } from "./dma-addr.js";
import type { BusAddr } from "./bus-addr.js";
import { PcieAccessError, PciError, PciInputError } from "./errors.js";
import type { RangeTable, Routes } from "./routing.js";
import { at } from "./util.js";

// A power of two: for a safe integer a, (a >>> 0) & (TLP_BOUNDARY - 1) is a mod TLP_BOUNDARY (ToUint32
// reduces modulo 2^32 exactly), without the floating-point remainder `%` costs on addresses past 2^32.
const TLP_BOUNDARY = 4096;
const PAGE_SIZE = 4096;

/** Which way a TLP went; index into the counter pairs below. */
const PATH_MEMORY = 0;
const PATH_SWITCH = 1;
const PATH_HOST_BRIDGE = 2;
/** MMIO that is no endpoint's BAR (a platform device): counted as "memory", may lack a backing store. */
const PATH_OTHER_MMIO = 3;
/** The route key of a TLP to such MMIO (RAM is -1, a peer its endpoint index). */
const ROUTE_MMIO = -3;
const PATH_NAMES: readonly FabricPath[] = ["memory", "peer-via-switch", "peer-via-host-bridge", "memory"];
const TLP_COUNTER = [Counter.TlpsToMemory, Counter.TlpsPeerViaSwitch, Counter.TlpsPeerViaHostBridge, Counter.TlpsToMemory] as const;
const BYTE_COUNTER = [Counter.BytesToMemory, Counter.BytesPeerViaSwitch, Counter.BytesPeerViaHostBridge, Counter.BytesToMemory] as const;

/**
 * Watches device DMA as it crosses the fabric, for the layers above the hardware: the kernel's CPU-cache
 * model snoops for coherent devices (a coherent interconnect supplies or invalidates cached lines), and
 * its debug checker sees which IOVAs a device touches. Called before the bytes move.
 */
export interface DmaAccessObserver {
  /** A TLP as the device issued it: `addr` is the DMA address (an IOVA behind an IOMMU) or a peer's bus address. */
  onTlp?(bdf: string, addr: DmaAddr | BusAddr, len: number, access: Access): void;
  /** A TLP about to reach RAM at physical `phys`, after any translation. */
  onMemoryAccess?(bdf: string, phys: PhysAddr, len: number, access: Access): void;
}

/** What every endpoint of one platform shares. */
export interface FabricContext {
  /** The platform's observer, if any (one slot shared by every endpoint, so setting it reaches all). */
  readonly observer: { current: DmaAccessObserver | undefined };
  readonly trace: Trace;
  readonly memory: PhysicalMemory;
  readonly routes: Routes;
  readonly ram: RangeTable;
  readonly endpointCount: number;
  readonly bdfs: readonly string[];
  /**
   * The route of a TLP from endpoint `requester` to endpoint `target` (-1: memory or MMIO) for the trace,
   * turned around in a switch or not; computed when a TLP event is built (someone listens), memoized.
   */
  readonly route?: (requester: number, target: number, viaSwitch: boolean) => { readonly hops: readonly string[]; readonly acsRedirect: boolean };
}

/**
 * Carries one device's reads and writes as TLPs, split at 4 KiB boundaries. Each TLP is routed as the
 * hardware would: a switch turns it towards a peer BAR when the bus address is that peer's and no ACS
 * redirect applies at the ingress port; everything else goes up to the root complex, through the
 * device's IOMMU, and on to RAM, to a peer BAR (when the host bridge forwards peer traffic), or to
 * nobody (Unsupported Request). A failing TLP stops the access; the ones before it have landed.
 */
export class Fabric {
  readonly #ctx: FabricContext;
  readonly #index: number;
  readonly #bdf: string;
  readonly #iommu: Iommu | undefined;
  readonly #direct: RangeTable;
  readonly #confidential: boolean;
  /** Set by #route: which path the TLP took. */
  #path = PATH_MEMORY;
  /** Set by #route: the endpoint whose BAR the TLP reached (-1: RAM or other MMIO), and the physical address. */
  #target = -1;
  #phys = 0;
  /** The route of the last TLP event and what it was for (an other-MMIO target and RAM share -1, told apart by name). */
  #lastRoute: { readonly hops: readonly string[]; readonly acsRedirect: boolean } | undefined;
  #lastRouteTarget = -2;
  #lastRouteViaSwitch = false;

  constructor(ctx: FabricContext, index: number, iommu: Iommu | undefined) {
    ctx.trace.counters.declare(Counter);
    this.#ctx = ctx;
    this.#index = index;
    this.#bdf = at(ctx.bdfs, index);
    this.#iommu = iommu;
    this.#direct = at(ctx.routes.direct, index);
    this.#confidential = ctx.memory.confidential;
  }

  #check(addr: number, len: number, op: string): void {
    if (!Number.isSafeInteger(addr) || addr < 0) {
      throw new PciInputError(`${op}(${this.#bdf})`, "addr", addr, "a safe integer >= 0");
    }
    if (!Number.isSafeInteger(addr + len)) {
      throw new PciInputError(`${op}(${this.#bdf})`, "addr + len", addr + len, `the end of ${hex(addr)} + ${len} bytes to stay below 2^53`);
    }
  }

  read(addr: number, len: number): Uint8Array {
    if (!Number.isSafeInteger(len) || len < 0) {
      throw new PciInputError(`dmaRead(${this.#bdf})`, "len", len, "a safe integer >= 0");
    }
    // The buffer is host memory: a length past the cap is refused before anything is allocated or routed.
    if (len > MAX_READ_BYTES) {
      throw new PciError("EINVAL", `dmaRead(${this.#bdf}): len = ${hex(len)} is invalid: expected at most MAX_READ_BYTES (${hex(MAX_READ_BYTES)}); read larger transfers with dmaReadInto into a buffer of your own`);
    }
    this.#check(addr, len, "dmaRead");
    const dst = new Uint8Array(len);
    this.#readInto(addr, dst);
    return dst;
  }

  readInto(addr: number, dst: Uint8Array): void {
    if (!(dst instanceof Uint8Array)) throw new PciInputError(`dmaReadInto(${this.#bdf})`, "dst", dst, "a Uint8Array");
    this.#check(addr, dst.length, "dmaReadInto");
    this.#readInto(addr, dst);
  }

  write(addr: number, bytes: Uint8Array): void {
    if (!(bytes instanceof Uint8Array)) throw new PciInputError(`dmaWrite(${this.#bdf})`, "bytes", bytes, "a Uint8Array");
    this.#check(addr, bytes.length, "dmaWrite");
    const mem = this.#ctx.memory;
    const len = bytes.length;
    let done = 0;
    while (done < len) {
      const a = addr + done;
      const chunk = Math.min(len - done, TLP_BOUNDARY - ((a >>> 0) & (TLP_BOUNDARY - 1)));
      const phys = this.#route(a, chunk, "write", done);
      const src = chunk === len ? bytes : bytes.subarray(done, done + chunk);
      if (this.#path === PATH_OTHER_MMIO) this.#otherMmio(a, phys, chunk, "write", done, () => { mem.write(phys as PhysAddr, src); });
      else mem.write(phys as PhysAddr, src);
      this.#count(a, chunk, "write");
      done += chunk;
    }
  }

  #readInto(addr: number, dst: Uint8Array): void {
    const mem = this.#ctx.memory;
    const len = dst.length;
    let done = 0;
    while (done < len) {
      const a = addr + done;
      const chunk = Math.min(len - done, TLP_BOUNDARY - ((a >>> 0) & (TLP_BOUNDARY - 1)));
      const phys = this.#route(a, chunk, "read", done);
      const view = chunk === len ? dst : dst.subarray(done, done + chunk);
      if (this.#path === PATH_OTHER_MMIO) this.#otherMmio(a, phys, chunk, "read", done, () => { mem.readInto(phys as PhysAddr, view); });
      else mem.readInto(phys as PhysAddr, view);
      this.#count(a, chunk, "read");
      done += chunk;
    }
  }

  #count(addr: number, len: number, access: Access): void {
    const trace = this.#ctx.trace;
    const c = trace.counters;
    const p = this.#path;
    c.add(TLP_COUNTER[p] ?? Counter.TlpsToMemory);
    c.add(BYTE_COUNTER[p] ?? Counter.BytesToMemory, len);
    const ev = trace.events;
    if (ev.active) this.#emitTlp(addr, len, access);
  }

  /** The route to `target` (memoized by the platform; the last one is kept here, as TLPs come in runs). */
  #routeTo(target: number, viaSwitch: boolean): { readonly hops: readonly string[]; readonly acsRedirect: boolean } {
    if (this.#lastRoute !== undefined && this.#lastRouteTarget === target && this.#lastRouteViaSwitch === viaSwitch) return this.#lastRoute;
    const ctx = this.#ctx;
    const last = target >= 0 ? at(ctx.bdfs, target) : target === ROUTE_MMIO ? "mmio" : "ram";
    let route = ctx.route?.(this.#index, Math.max(target, -1), viaSwitch) ?? { hops: [this.#bdf, last], acsRedirect: false };
    // The platform's routes end at "ram" for any target that is no endpoint: name an MMIO region's.
    if (route.hops.at(-1) !== last) route = { hops: [...route.hops.slice(0, -1), last], acsRedirect: route.acsRedirect };
    this.#lastRoute = route;
    this.#lastRouteTarget = target;
    this.#lastRouteViaSwitch = viaSwitch;
    return route;
  }

  #emitTlp(addr: number, len: number, access: Access): void {
    const ctx = this.#ctx;
    const p = this.#path;
    const t = this.#target;
    const target = t >= 0 ? at(ctx.bdfs, t) : p === PATH_OTHER_MMIO ? "mmio" : "ram";
    const route = this.#routeTo(p === PATH_OTHER_MMIO ? ROUTE_MMIO : t, p === PATH_SWITCH);
    ctx.trace.events.emit<PcieP2pEvent>({
      type: "tlp",
      t: ctx.trace.clock.now,
      device: this.#bdf,
      path: PATH_NAMES[p] ?? "memory",
      access,
      addr: addr as DmaAddr | BusAddr,
      len,
      phys: this.#phys as PhysAddr,
      target,
      hops: route.hops,
      acsRedirect: route.acsRedirect,
    });
  }

  /** Routes one TLP; returns the CPU physical address it lands on and sets #path, or throws. */
  #route(addr: number, len: number, access: Access, completed: number): number {
    const observer = this.#ctx.observer.current;
    if (observer?.onTlp !== undefined) observer.onTlp(this.#bdf, addr as DmaAddr | BusAddr, len, access);
    const direct = this.#direct;
    if (direct.length > 0) {
      const i = direct.find(addr);
      if (i >= 0) {
        this.#path = PATH_SWITCH;
        this.#target = direct.endpoint[i] ?? -1;
        return (this.#phys = addr - (direct.delta[i] ?? 0));
      }
    }
    let phys = addr;
    const mmu = this.#iommu;
    if (mmu !== undefined) {
      phys = mmu.translate(this.#bdf, addr as Iova, len, access);
      if (phys < 0) {
        const fault = mmu.faults().at(-1);
        const why = fault?.device === this.#bdf && fault.iova === addr ? fault.reason : "fault";
        throw new PcieAccessError("iommu-fault", this.#bdf, access, addr, completed, `${mmu.name} refused the translation (${why})`);
      }
    }
    const ctx = this.#ctx;
    if (ctx.ram.find(phys) >= 0) {
      if (this.#confidential && (ctx.memory.pages.flags(Math.floor(phys / PAGE_SIZE)) & PageFlag.ENCRYPTED) !== 0) {
        ctx.trace.counters.add(Counter.PrivateMemoryBlocked);
        throw new PcieAccessError("private-memory", this.#bdf, access, addr, completed, `physical ${hex(phys)} is private memory of the confidential guest (not shared with devices)`);
      }
      this.#path = PATH_MEMORY;
      this.#target = -1;
      this.#phys = phys;
      if (observer?.onMemoryAccess !== undefined) observer.onMemoryAccess(this.#bdf, phys as PhysAddr, len, access);
      return phys;
    }
    const bars = ctx.routes.barsByPhys;
    const b = bars.find(phys);
    if (b >= 0) {
      const target = at(bars.endpoint, b);
      if (ctx.routes.viaHostBridge[this.#index * ctx.endpointCount + target] === 0) {
        this.#unsupported(addr, len, access, completed, `physical ${hex(phys)} is a BAR of ${at(ctx.bdfs, target)} and the host bridge does not forward peer-to-peer traffic`);
      }
      this.#path = PATH_HOST_BRIDGE;
      this.#target = target;
      this.#phys = phys;
      return phys;
    }
    const region = ctx.memory.regionAt(phys as PhysAddr);
    if (region?.kind === "mmio") {
      this.#path = PATH_OTHER_MMIO;
      this.#target = -1;
      this.#phys = phys;
      return phys;
    }
    this.#unsupported(addr, len, access, completed, `physical ${hex(phys)} is claimed by no RAM, BAR or MMIO region`);
  }

  /** An MMIO region with no byte backing answers UR, like a completer that decodes nothing there. */
  #otherMmio(addr: number, phys: number, len: number, access: Access, completed: number, op: () => void): void {
    try {
      op();
    } catch (e) {
      if (!(e instanceof MmioNoBackingError)) throw e;
      this.#unsupported(addr, len, access, completed, `physical ${hex(phys)} is in an MMIO region with no backing store`);
    }
  }

  #unsupported(addr: number, len: number, access: Access, completed: number, detail: string): never {
    const trace = this.#ctx.trace;
    trace.counters.add(Counter.UnsupportedRequests);
    const ev = trace.events;
    if (ev.active) ev.emit<PcieP2pEvent>({ type: "unsupported-request", t: trace.clock.now, device: this.#bdf, access, addr: addr as DmaAddr | BusAddr, len });
    throw new PcieAccessError("unsupported-request", this.#bdf, access, addr, completed, detail);
  }
}
