import type { Iommu } from "@dmasim/iommu";
import { IommuIotlbGather } from "@dmasim/iommu/internal";
import { MAX_READ_BYTES, PAGE_SIZE, type PhysAddr } from "@dmasim/memory";
import type { PhysicalMemory } from "@dmasim/memory";
import type { DmaAccessObserver, Platform } from "@dmasim/pcie-p2p";
import { FaultInjection, showValue } from "@dmasim/trace";
import type { Trace } from "@dmasim/trace";
import type { TraceEvent } from "./events.js";
import { CpuCache } from "./cache/index.js";
import { CACHELINE_SIZE } from "./constants.js";
import { costProfile, priceCounters } from "./costs.js";
import type { CostProfile, CostReport } from "./costs.js";
import type { CostProfileName } from "./cost-profiles.js";
import { Counter } from "./counters.js";
import { DmaDebugChecker } from "./debug/checker.js";
import type { DebugEntry } from "./debug/checker.js";
import type { DmaDebugReport } from "./debug/errors.js";
import { IovaTracker } from "./debug/iova-tracker.js";
import type { DeviceKernel } from "./device-kernel.js";
import { DmaDevice } from "./device.js";
import type { DmaDeviceOptions, DmaKernelOptions, IommuMode } from "./options.js";
import { parseDeviceOptions, parseKernelOptions } from "./options.js";
import { DmaConfigError, DmaInputError, DmaStateError } from "./errors.js";
import { checkDevice } from "./api-trace.js";
import { checkRange, isRange } from "./validate.js";
import { FlushQueue, IovaDomain } from "./iova/index.js";
import { ARCH_DMA_MINALIGN_DEFAULT } from "./kmalloc.js";
import type { IommuDmaCookie } from "./iova/index.js";
import { SwiotlbPool } from "./swiotlb/index.js";

export type { DmaKernelOptions, IommuMode } from "./options.js";

/** A line of the kernel log (dev_warn and friends), with virtual time. */
export interface KernelLogLine {
  /** Virtual time of the line in ns. */
  readonly t: number;
  /** BDF of the device the line is about, as dev_warn prefixes it. */
  readonly device: string;
  /** The text the kernel would have printed. */
  readonly message: string;
}

/** Report of `kernel.unbind(dev)`: what the driver still held. */
export interface UnbindReport {
  /** BDF of the unbound device. */
  readonly device: string;
  /** Streaming and coherent mappings the driver never unmapped or freed (dma-debug's entries), now forgotten. */
  readonly leakedMappings: readonly DebugEntry[];
  /** dma_iova_state allocations the driver never freed (reported as `iova-leak`). */
  readonly leakedIovaStates: number;
}

/** Report of `kernel.shutdown()`: what was still mapped or held when the kernel let the platform go. */
export interface ShutdownReport {
  /** One unbind report per device that was still bound, in the order they were probed. */
  readonly devices: readonly UnbindReport[];
  /** swiotlb bounce mappings still live: the pool's memory stays allocated (leaked, as it would be). */
  readonly swiotlbMappings: number;
  /** Nothing was left: no mapping, no IOVA state, no bounce slot. */
  readonly clean: boolean;
}

/**
 * The DMA side of a kernel running on a platform: devices (`struct device`), their DMA ops and
 * domains, swiotlb, the CPU cache, dma-debug and cost accounting. The API functions (dmaMapPhys,
 * dmaIovaLink, …) take a device obtained from `kernel.device(bdf)`.
 */
export class DmaKernel implements DeviceKernel {
  /** The PCIe platform this kernel drives: its memory, IOMMUs and endpoints. */
  readonly platform: Platform;
  /** The platform's trace, its events typed with every layer up to this one. */
  readonly trace: Trace<TraceEvent>;
  /** Host physical memory (the platform's). */
  readonly memory: PhysicalMemory;
  /** How the IOMMU is used for DMA: strict, lazy (flush queue), passthrough or off; default strict. */
  readonly iommuMode: IommuMode;
  /** CPUs of the model (per-CPU IOVA caches, flush queues and swiotlb areas); default 4. */
  readonly cpus: number;
  /** dma-debug: records every mapping and checks each API call against them. */
  readonly debug: DmaDebugChecker;
  /** Every live dma_iova_state, so the two-step API's misuse (double free, a state of another device) is caught. */
  readonly iovaTracker: IovaTracker;
  readonly swiotlb: SwiotlbPool | undefined;
  readonly swiotlbForce: boolean;
  /** The CPU data cache as non-coherent devices see it: what a missing dma_sync_* leaves stale. */
  readonly cpuCache: CpuCache;
  readonly kmallocBounce: boolean;
  /** ARCH_DMA_MINALIGN (dma_get_cache_alignment). */
  readonly archDmaMinalign: number;
  /** Nanoseconds per counted event (the named profile with any overrides), for cost reports. */
  readonly profile: CostProfile;
  /** The named profile `profile` starts from (before any overrides). */
  readonly profileName: CostProfileName;
  /** The CPU the next API call runs on (per-CPU IOVA caches, flush queues, swiotlb areas). */
  #cpu = 0;
  readonly #devices = new Map<string, DmaDevice>();
  readonly #deviceOptions: Readonly<Record<string, DmaDeviceOptions>>;
  readonly #log: KernelLogLine[] = [];
  readonly #loggedOnce = new Set<string>();
  /** Physical ranges allocated coherent for non-coherent devices: CPU access to them is uncached. */
  readonly #uncached = new Map<number, number>();
  /** What this kernel installed as the platform's DMA observer (cache snooping, two-step dma-debug). */
  readonly #observer: DmaAccessObserver;
  /** Set by shutdown(): the platform has been let go, and nothing may be done through this kernel. */
  #shutDown = false;
  /** Per-kernel working storage of consumer packages, by a key each owns (see consumerScratch). */
  readonly #consumerScratch = new Map<symbol, unknown>();

  constructor(platform: Platform, options: DmaKernelOptions = {}) {
    platform.trace.counters.declare(Counter);
    this.platform = platform;
    this.trace = platform.trace.view<TraceEvent>();
    this.memory = platform.memory;
    const o = parseKernelOptions(options, platform.endpoints.map((e) => e.bdf));
    this.iommuMode = o.iommuMode ?? "strict";
    this.cpus = o.cpus ?? 4;
    const debug = o.debug ?? "throw";
    this.kmallocBounce = o.kmallocBounce ?? false;
    this.archDmaMinalign = o.archDmaMinalign ?? ARCH_DMA_MINALIGN_DEFAULT;
    const cacheLines = o.cacheLines;
    const sw = o.swiotlb;
    const swOptions = sw === false ? undefined : sw;
    const swBytes = swOptions?.bytes;
    const faultInject = o.faultInject;
    this.#deviceOptions = o.devices ?? {};
    // One DMA layer per platform: a second kernel would take over the platform's one DMA observer and
    // leave the first kernel's dma-debug and cache snooping blind to every device access.
    if (platform.dmaObserver !== undefined) {
      throw new DmaStateError("EBUSY", "createDmaKernel: the platform already has a DMA kernel (or another DMA observer); call shutdown() on that kernel first, or create a new platform");
    }
    // Everything is validated before anything is allocated: a refused configuration leaves the platform as it was.
    this.profileName = typeof o.costProfile === "string" ? o.costProfile : "default";
    this.profile =
      typeof o.costProfile === "string" || o.costProfile === undefined
        ? costProfile(o.costProfile ?? "default", o.costOverrides ?? {})
        : costProfile("default", { ...o.costProfile, ...o.costOverrides });
    // add_dma_entry (kernel/dma/debug.c) reports no overlapping cachelines with
    // CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC while swiotlb is active: the small buffers that could share a
    // line are bounced.
    // Nor when dma_get_cache_alignment() is below L1_CACHE_BYTES (the model's CPU cache line).
    const pages = this.memory.pages;
    this.debug = new DmaDebugChecker(this.trace, debug, {
      reportCachelineOverlap: !(this.kmallocBounce && sw !== false) && this.archDmaMinalign >= CACHELINE_SIZE,
      // check_for_stack / check_for_illegal_area read the page descriptor; -1 for a frame without one.
      pageFlags: (phys) => {
        const pfn = Math.floor(phys / PAGE_SIZE);
        return pages.hasPage(pfn) ? pages.flags(pfn) : -1;
      },
    });
    this.iovaTracker = new IovaTracker(this.debug);
    this.cpuCache = new CpuCache(this.memory, cacheLines === undefined ? {} : { capacity: cacheLines });
    if (sw === false) {
      this.swiotlb = undefined;
      this.swiotlbForce = false;
    } else {
      const bytes = swBytes ?? 64 * 1024 * 1024;
      try {
        this.swiotlb = new SwiotlbPool(this.memory, { size: bytes, nareas: this.cpus });
      } catch (e) {
        throw new DmaConfigError(`swiotlb.bytes = ${String(bytes)} cannot be allocated: ${(e as Error).message}`, { cause: e });
      }
      // Confidential guests bounce every dma-direct mapping through the shared pool
      // (swiotlb_force_bounce, set by the CoCo guest setup via force_dma_unencrypted).
      this.swiotlbForce = swOptions?.force === true || this.memory.confidential;
    }
    if (faultInject !== undefined) this.trace.faults.configure(faultInject);
    this.#observer = {
      // dma-debug (dmasim's two-step tracking): a device touching a linked IOVA that was never synced.
      onTlp: (bdf, addr, len) => {
        if (this.debug.enabled) this.iovaTracker.deviceAccess(bdf, addr, len);
      },
      // A coherent device's DMA snoops the CPU caches: reads get dirty lines written back first, writes
      // invalidate stale lines. Non-coherent devices bypass the cache — hence the syncs.
      onMemoryAccess: (bdf, phys, len, access) => {
        if (this.cpuCache.lines === 0 || this.#devices.get(bdf)?.coherent === false) return;
        if (access === "read") this.cpuCache.snoopDeviceRead(phys, len);
        else this.cpuCache.snoopDeviceWrite(phys, len);
      },
    };
    platform.setDmaObserver(this.#observer);
  }

  /** The platform's endpoint, with an unknown BDF reported as a configuration error. */
  #endpoint(bdf: string, what: string): ReturnType<Platform["endpoint"]> {
    const known = this.platform.endpoints.find((e) => e.bdf === bdf);
    if (known === undefined) {
      const list = this.platform.endpoints.map((e) => e.bdf).join(", ");
      throw new DmaConfigError(`${what}: bdf = ${JSON.stringify(bdf)} is invalid: expected an endpoint of the platform (${list || "none"})`);
    }
    return known;
  }

  /** The platform's fault-injection sites (see DMA_FAULT_SITES): `kernel.faultInjection.attr(FAIL_IOVA).configure(…)`. */
  get faultInjection(): FaultInjection {
    return this.trace.faults;
  }

  get cpu(): number {
    return this.#cpu;
  }

  /** Moves the caller to another CPU (what preemption or a different queue's IRQ would do). */
  setCpu(cpu: number): void {
    if (!Number.isInteger(cpu) || cpu < 0 || cpu >= this.cpus) {
      throw new DmaConfigError(`cpu = ${String(cpu)} is invalid: expected an integer from 0 to ${this.cpus - 1}`);
    }
    this.#cpu = cpu;
  }

  /** Runs `fn` on `cpu`, then returns to the previous CPU. */
  onCpu<T>(cpu: number, fn: () => T): T {
    const prev = this.#cpu;
    this.setCpu(cpu);
    try {
      return fn();
    } finally {
      this.#cpu = prev;
    }
  }

  /** The `struct device` of an endpoint, created (probed) on first use. */
  device(bdf: string, options?: DmaDeviceOptions): DmaDevice {
    if (this.#shutDown) throw new DmaStateError("ENODEV", `device: this DmaKernel was shut down; create a new one on the platform to look up ${showValue(bdf)}`);
    const existing = this.#devices.get(bdf);
    if (existing !== undefined) {
      if (options !== undefined) throw new DmaConfigError(`device ${bdf} already exists: pass its options on first lookup or in createDmaKernel({ devices })`);
      return existing;
    }
    const endpoint = this.#endpoint(bdf, "device");
    const checked = options === undefined ? undefined : parseDeviceOptions(bdf, options);
    const iommu = this.platform.iommuFor(bdf);
    const merged: DmaDeviceOptions = { ...this.#deviceOptions[bdf], ...checked };
    const dev = this.#probe(endpoint, iommu, merged);
    this.#devices.set(bdf, dev);
    return dev;
  }

  /** Every device looked up and still bound, in probe order. */
  devices(): DmaDevice[] {
    return [...this.#devices.values()];
  }

  /**
   * Driver unbind: reports every mapping and IOVA state the driver still holds (dma-debug's
   * "pending DMA allocations" check), then forgets them; the device can be looked up again afterwards.
   */
  unbind(dev: DmaDevice): UnbindReport {
    // A stale handle must not tear down the device that a later lookup probed under the same BDF.
    checkDevice("unbind", dev);
    if (this.#devices.get(dev.bdf) !== dev) throw new DmaInputError("unbind", "dev", dev.bdf, "a device this kernel handed out");
    const live = this.iovaTracker.liveCount(dev.bdf);
    const leakedMappings = this.debug.leaks(dev.bdf);
    if (live > 0) this.debug.report("iova-leak", dev.bdf, `device driver still holds ${live} dma_iova_state allocation(s) while released from device`);
    this.debug.forget(dev.bdf);
    this.iovaTracker.forget(dev.bdf);
    dev.bound = false;
    this.#devices.delete(dev.bdf);
    return { device: dev.bdf, leakedMappings, leakedIovaStates: live };
  }

  /** True once shutdown() has run. */
  get isShutDown(): boolean {
    return this.#shutDown;
  }

  /**
   * Stops this kernel and gives the platform back, so another DmaKernel can be created on it: drains the
   * lazy flush queues, unbinds every device (reporting, as dma-debug does at unbind, every mapping and
   * IOVA state a driver still held; in "throw" mode these are recorded, not thrown, so the shutdown
   * always completes), detaches the devices from their IOMMU domains and frees the domains (a device's
   * DMA is blocked afterwards), gives the swiotlb pool's memory back when no bounce is live, and removes
   * the kernel's DMA observer. Any later call through this kernel or its devices is refused.
   */
  shutdown(): ShutdownReport {
    if (this.#shutDown) throw new DmaStateError("ENODEV", "shutdown: this DmaKernel was already shut down");
    const debug = this.debug;
    const mode = debug.mode;
    if (mode === "throw") debug.mode = "collect";
    const devices: UnbindReport[] = [];
    try {
      this.flushAll();
      for (const dev of [...this.#devices.values()]) {
        devices.push(this.unbind(dev));
        const iommu = this.platform.iommuFor(dev.bdf);
        if (iommu !== undefined && dev.domain !== undefined && iommu.domainOf(dev.bdf) === dev.domain) {
          iommu.detachDevice(dev.bdf);
          iommu.freeDomain(dev.domain);
        }
      }
    } finally {
      debug.mode = mode;
    }
    const pool = this.swiotlb;
    const swiotlbMappings = pool?.stats.mappings ?? 0;
    if (pool !== undefined && swiotlbMappings === 0) pool.release();
    this.#uncached.clear();
    this.#consumerScratch.clear();
    if (this.platform.dmaObserver === this.#observer) this.platform.setDmaObserver(undefined);
    this.#shutDown = true;
    const clean = swiotlbMappings === 0 && devices.every((d) => d.leakedMappings.length === 0 && d.leakedIovaStates === 0);
    return { devices, swiotlbMappings, clean };
  }

  /** Every dma-debug finding so far (with `debug: "collect"`, or those thrown in "throw" mode). */
  debugReports(): readonly DmaDebugReport[] {
    return this.debug.reports();
  }

  /** dev_warn and friends: what the kernel would have printed. */
  dmesg(): readonly KernelLogLine[] {
    return this.#log;
  }

  /** dev_warn_once: logged the first time per device and call site. */
  logOnce(dev: DmaDevice, site: string, message: string): void {
    const key = `${dev.bdf}\0${site}`;
    if (this.#loggedOnce.has(key)) return;
    this.#loggedOnce.add(key);
    this.log(dev, message);
  }

  log(dev: DmaDevice | string, message: string): void {
    this.#log.push({ t: this.trace.clock.now, device: typeof dev === "string" ? dev : dev.bdf, message });
  }

  /** Counters and modelled time together, since the platform was created (or since `since`). */
  costs(since?: ReturnType<Trace["counters"]["snapshot"]>): CostReport {
    const now = this.trace.counters.snapshot();
    return priceCounters(since === undefined ? now : now.diff(since), this.profile);
  }

  /**
   * A CPU store, as a driver's memcpy into a buffer would do it: through the CPU cache model (so a
   * non-coherent device sees it only after a sync for the device), or straight to memory for uncached
   * coherent allocations of non-coherent devices.
   */
  cpuWrite(phys: PhysAddr, bytes: Uint8Array): void {
    if (!(bytes instanceof Uint8Array)) throw new DmaInputError("cpuWrite", "bytes", bytes, "a Uint8Array of the bytes to store");
    if (!isRange(phys, bytes.length)) checkRange("cpuWrite", "phys", phys, bytes.length);
    if (this.#isUncached(phys, bytes.length)) this.memory.write(phys, bytes);
    else this.cpuCache.cpuWrite(phys, bytes);
  }

  /** A CPU load: cached lines where present (possibly stale after a device write), memory elsewhere. */
  cpuRead(phys: PhysAddr, len: number): Uint8Array {
    if (!isRange(phys, len)) checkRange("cpuRead", "phys", phys, len);
    // The result is a new host buffer: the same cap as PhysicalMemory.read, checked before allocating.
    if (len > MAX_READ_BYTES) throw new DmaInputError("cpuRead", "len", len, `at most MAX_READ_BYTES (${MAX_READ_BYTES}); read larger ranges in parts`);
    return this.#isUncached(phys, len) ? this.memory.read(phys, len) : this.cpuCache.cpuRead(phys, len);
  }

  /**
   * arch_dma_set_uncached: CPU access to [phys, phys + size) bypasses the CPU cache from now on, as
   * dma_direct_alloc arranges for a coherent buffer of a non-coherent device.
   */
  archDmaSetUncached(phys: PhysAddr, size: number): void {
    this.#uncached.set(phys, size);
  }

  /** arch_dma_clear_uncached: the range that starts at `phys` is cached again (the buffer was freed). */
  archDmaClearUncached(phys: PhysAddr): void {
    this.#uncached.delete(phys);
  }

  #isUncached(phys: number, len: number): boolean {
    if (this.#uncached.size === 0) return false;
    for (const [base, size] of this.#uncached) if (phys >= base && phys + len <= base + size) return true;
    return false;
  }

  /**
   * Working storage a consumer package (scatterlist's layout arrays, …) keeps per kernel rather than per
   * module, so two kernels never share it: created by `make` on first use under `key`, a symbol the
   * consumer owns. The consumer guards against nested use itself (a trace subscriber can call back in).
   */
  consumerScratch<T>(key: symbol, make: () => T): T {
    let s = this.#consumerScratch.get(key) as T | undefined;
    if (s === undefined) {
      s = make();
      this.#consumerScratch.set(key, s);
    }
    return s;
  }

  /** Drains every lazy-mode flush queue now (as a domain teardown would). */
  flushAll(): void {
    for (const dev of this.#devices.values()) dev.cookie?.fq?.flushNow();
  }

  #probe(endpoint: ReturnType<Platform["endpoint"]>, iommu: Iommu | undefined, options: DmaDeviceOptions): DmaDevice {
    // iommu_get_default_domain_type: untrusted (external-facing) devices always get a DMA domain,
    // and never a flush queue (iommu_dma_init_domain skips the FQ for them).
    const mode = this.iommuMode;
    const untrusted = endpoint.untrusted;
    if (iommu === undefined || mode === "off") {
      if (iommu !== undefined) iommu.attachDevice(endpoint.bdf, iommu.allocDomain("identity"));
      return new DmaDevice({ kernel: this, endpoint, ops: "direct", domain: undefined, cookie: undefined, strict: true, options });
    }
    if (mode === "passthrough" && !untrusted) {
      const domain = iommu.allocDomain("identity");
      iommu.attachDevice(endpoint.bdf, domain);
      return new DmaDevice({ kernel: this, endpoint, ops: "direct", domain, cookie: undefined, strict: true, options });
    }
    const domain = iommu.allocDomain("paging");
    iommu.attachDevice(endpoint.bdf, domain);
    const granule = iommu.granule;
    // init_iova_domain(granule, start_pfn): base 0 gives start_pfn 1 so IOVA 0 is never handed out.
    const iovad = new IovaDomain(this.trace, { granule, startPfn: 1, cpus: this.cpus });
    // iova_reserve_pci_windows: bus addresses that a switch or root port would route to a peer's BAR
    // must never be handed out as IOVAs, or the device's DMA would go to the peer instead of memory.
    const window = endpoint.hostBridge.window;
    iovad.reserveIova(Math.floor(window.bus / granule), Math.floor((window.bus + window.size - 1) / granule));
    const strict = mode === "strict" || untrusted;
    const fq = strict
      ? undefined
      : new FlushQueue(this.trace, iovad, {
          flushIotlbAll: () => {
            domain.invalidateAll();
          },
          releasePtPages: (list) => {
            domain.releasePtPages(list as Parameters<typeof domain.releasePtPages>[0]);
          },
        }, { device: endpoint.bdf });
    const cookie: IommuDmaCookie = { iovad, fq, iotlbGather: new IommuIotlbGather() };
    return new DmaDevice({ kernel: this, endpoint, ops: "iommu", domain, cookie, strict, options });
  }
}

/** Creates the DMA side of a kernel on `platform` (see DmaKernelOptions). */
export function createDmaKernel(platform: Platform, options: DmaKernelOptions = {}): DmaKernel {
  return new DmaKernel(platform, options);
}
