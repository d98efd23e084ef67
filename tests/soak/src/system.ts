import { createDmaKernel, IOVA_FQ_TIMEOUT_NS, IOVA_RANGE_CACHE_MAX_SIZE, type DmaDevice, type DmaIovaState, type DmaKernel, unsafeDmaAddr } from "@dmasim/dma";
import { DmaDirection } from "@dmasim/dma";
import { GiB, PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import { createPlatform, PcieAccessError, type Platform } from "@dmasim/pcie-p2p";
import type { SgTable } from "@dmasim/scatterlist";
import type { BlkDmaIter, Request } from "@dmasim/bio";
import { BDFS, kernelOptions, type SoakConfig } from "./config.js";
import type { PhysAddr } from "@dmasim/memory";

/** A broken promise of the model: the soak counts these (and a test fails on the first). */
export class SoakViolation extends Error {
  override readonly name = "SoakViolation";
}

export function violated(message: string): never {
  throw new SoakViolation(message);
}

/** Pages of RAM a buffer took, and where its data sits in them. */
export interface Buffer {
  readonly base: number;
  readonly pages: number;
  readonly phys: number;
  /** What the CPU last wrote there (or read back after the device wrote it): what the device must see. */
  data: Uint8Array;
}

/** A device-visible piece of a mapping: `len` bytes at `addr` showing `data` from `from` on. */
export interface Segment {
  readonly addr: number;
  readonly len: number;
}

interface MappingBase {
  readonly id: number;
  readonly dev: DmaDevice;
  readonly dir: DmaDirection;
  readonly bufs: readonly Buffer[];
  /** Device addresses whose concatenated bytes are the concatenated `bufs` data. */
  readonly segments: readonly Segment[];
}

export type Mapping =
  | (MappingBase & { readonly kind: "phys" })
  | (MappingBase & { readonly kind: "iova"; readonly state: DmaIovaState; readonly ranges: readonly { offset: number; len: number }[] })
  | (MappingBase & { readonly kind: "sg"; readonly sgt: SgTable })
  | (MappingBase & { readonly kind: "bio"; readonly rq: Request; readonly state: DmaIovaState; readonly iter: BlkDmaIter })
  | (MappingBase & { readonly kind: "coherent"; readonly cpuAddr: number; readonly dmaHandle: number; readonly size: number });

/** An IOVA unmapped in lazy mode: it must fault once the flush queue's timeout has passed. */
interface PendingUnmap {
  readonly dev: DmaDevice;
  readonly addr: number;
  readonly deadline: number;
}

/** What a refused call must leave as it was. */
interface Fingerprint {
  readonly swiotlbUsed: number;
  readonly mappedBytes: readonly number[];
  readonly ptPending: readonly number[];
  readonly debugEntries: readonly number[];
  readonly iovaStates: readonly number[];
  /** IOVA ranges handed out: in the tree, neither in a range cache nor waiting in a flush queue. */
  readonly iovaInUse: readonly number[];
  readonly freeBytes: number;
  readonly reports: number;
}

const SECRET = 0xee;

/** The real stack under test plus the soak's own record of what every live mapping must show. */
export class SoakSystem {
  readonly cfg: SoakConfig;
  readonly platform: Platform;
  readonly kernel: DmaKernel;
  readonly devs: readonly DmaDevice[];
  readonly live: Mapping[] = [];
  readonly #pending: PendingUnmap[] = [];
  readonly #reservedRanges: number[];
  readonly #initialFree: number;
  #nextId = 1;
  /** Outcomes by kind ("MapPhys ok", "MapPhys refused", …), for the soak's summary. */
  readonly outcomes = new Map<string, number>();

  constructor(cfg: SoakConfig) {
    this.cfg = cfg;
    this.platform = createPlatform({
      memory: { ramBytes: GiB },
      iommu: { requiresSyncMap: cfg.requiresSyncMap, ...(cfg.smallIotlb ? { iotlbEntries: 16, iotlbWays: 4 } : {}) },
      endpoints: [{ bdf: BDFS[0] }, { bdf: BDFS[1], untrusted: true }],
    });
    this.kernel = createDmaKernel(this.platform, kernelOptions(cfg));
    this.devs = BDFS.map((b) => this.kernel.device(b));
    // Stale kernel data in the bounce pool: what swiotlb's padding must keep from an untrusted device.
    const pool = this.kernel.swiotlb;
    if (pool !== undefined) this.platform.memory.write(pool.start, new Uint8Array(pool.end - pool.start).fill(SECRET));
    this.#reservedRanges = this.devs.map((d) => d.cookie?.iovad.liveRanges ?? 0);
    this.#initialFree = this.platform.memory.allocator.freeBytes;
  }

  count(outcome: string): void {
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
  }

  nextId(): number {
    return this.#nextId++;
  }

  /**
   * Allocates pages for `len` bytes at `offset` into the first page: the pages are first filled with a
   * secret byte (what an untrusted device must never see), then the data is written by the CPU.
   */
  allocBuffer(offset: number, len: number, data: Uint8Array): Buffer | undefined {
    const pages = Math.max(1, Math.ceil((offset + len) / PAGE_SIZE));
    let base: number;
    try {
      base = this.platform.memory.allocator.allocPages(pages);
    } catch {
      return undefined;
    }
    this.platform.memory.write(unsafePhysAddr(base), new Uint8Array(pages * PAGE_SIZE).fill(SECRET));
    const phys = base + offset;
    this.kernel.cpuWrite(phys as PhysAddr, data);
    return { base, pages, phys, data };
  }

  freeBuffer(buf: Buffer): void {
    this.platform.memory.allocator.freePages(unsafePhysAddr(buf.base), buf.pages);
  }

  fingerprint(): Fingerprint {
    const k = this.kernel;
    return {
      swiotlbUsed: k.swiotlb?.stats.used ?? 0,
      mappedBytes: this.devs.map((d) => (d.ops === "iommu" ? (d.domain?.mappedBytes ?? 0) : 0)),
      ptPending: this.devs.map((d) => d.domain?.ptPagesPending ?? 0),
      debugEntries: this.devs.map((d) => k.debug.entries(d.bdf).length),
      iovaStates: this.devs.map((d) => k.iovaTracker.liveCount(d.bdf)),
      iovaInUse: this.devs.map((d) => iovaInUse(d)),
      freeBytes: this.platform.memory.allocator.freeBytes,
      reports: k.debugReports().length,
    };
  }

  /** A refused call (with the driver's unwinding) must leave everything as it was. */
  checkUnchanged(before: Fingerprint, what: string): void {
    this.count(`${what.split(" (")[0] ?? what} refused`);
    const after = this.fingerprint();
    const a = JSON.stringify(before);
    const b = JSON.stringify(after);
    if (a !== b) violated(`${what} was refused but changed the state: ${a} -> ${b}`);
  }

  /** Reads through the device, or undefined when the access faulted. */
  tryRead(dev: DmaDevice, addr: number, len: number): Uint8Array | undefined {
    try {
      return this.platform.endpoint(dev.bdf).dmaRead(unsafeDmaAddr(addr), len);
    } catch (e) {
      if (e instanceof PcieAccessError) return undefined;
      throw e;
    }
  }

  tryWrite(dev: DmaDevice, addr: number, bytes: Uint8Array): boolean {
    try {
      this.platform.endpoint(dev.bdf).dmaWrite(unsafeDmaAddr(addr), bytes);
      return true;
    } catch (e) {
      if (e instanceof PcieAccessError) return false;
      throw e;
    }
  }

  /** After an unmap: strict domains fault at once; lazy ones must fault once the flush timeout passed. */
  unmapped(dev: DmaDevice, addr: number): void {
    if (dev.ops !== "iommu") return;
    if (dev.cookie?.fq === undefined) {
      if (this.tryRead(dev, addr, 1) !== undefined) violated(`${dev.bdf}: IOVA ${hex(addr)} still translates right after a strict unmap`);
      this.count("strict unmap faulted at once");
      return;
    }
    this.#pending.push({ dev, addr, deadline: this.kernel.trace.clock.now + IOVA_FQ_TIMEOUT_NS });
  }

  /** Checks the lazy unmaps whose flush timeout has passed. */
  checkPending(): void {
    const now = this.kernel.trace.clock.now;
    for (let i = this.#pending.length - 1; i >= 0; i--) {
      const p = this.#pending[i];
      if (p === undefined || p.deadline > now) continue;
      this.#pending.splice(i, 1);
      // The IOVA may have been handed out again after the flush: then it translates, rightly.
      if (this.live.some((m) => m.dev === p.dev && m.segments.some((s) => p.addr >= s.addr - PAGE_SIZE && p.addr < s.addr + s.len + PAGE_SIZE))) continue;
      if (this.tryRead(p.dev, p.addr, 1) !== undefined) violated(`${p.dev.bdf}: IOVA ${hex(p.addr)} still translates ${now - p.deadline + IOVA_FQ_TIMEOUT_NS} ns after a lazy unmap`);
      this.count("lazy unmap faulted after the timeout");
    }
  }

  /** The invariants that hold after every step. */
  checkAll(): void {
    const reports = this.kernel.debugReports();
    if (reports.length > 0) violated(`dma-debug reported: ${reports.map((r) => `${r.check}: ${r.message}`).join("; ")}`);
    for (const m of this.live) {
      if (m.dir !== DmaDirection.TO_DEVICE && m.dir !== DmaDirection.BIDIRECTIONAL) continue;
      this.checkDeviceSees(m);
      if (m.dev.endpoint.untrusted && m.dev.ops === "iommu") this.checkConfined(m);
    }
    this.checkPending();
  }

  /** The device reads, through its segments, exactly what the buffers hold. */
  checkDeviceSees(m: Mapping): void {
    const expected = concat(m.bufs.map((b) => b.data));
    let at = 0;
    for (const s of m.segments) {
      const got = this.tryRead(m.dev, s.addr, s.len);
      if (got === undefined) violated(`mapping #${m.id} (${m.kind}, ${m.dev.bdf}): the device faulted reading ${s.len} bytes at ${hex(s.addr)}`);
      const diff = firstDiff(got, expected.subarray(at, at + s.len));
      if (diff >= 0) {
        violated(`mapping #${m.id} (${m.kind}, ${m.dev.bdf}): byte ${at + diff} reads ${got[diff]} at ${hex(s.addr + diff)}, memory holds ${expected[at + diff]}`);
      }
      at += s.len;
    }
    if (at !== expected.length) violated(`mapping #${m.id} (${m.kind}): its segments cover ${at} bytes of ${expected.length}`);
  }

  /** An untrusted device reading the whole granules around a mapping sees zeros outside its bytes. */
  checkConfined(m: Mapping): void {
    const g = m.dev.granule;
    for (const s of m.segments) {
      const lo = s.addr - (s.addr % g);
      const hi = Math.ceil((s.addr + s.len) / g) * g;
      for (const [from, to] of [
        [lo, s.addr],
        [s.addr + s.len, hi],
      ] as const) {
        if (to <= from) continue;
        // Another segment of the same mapping may share the granule.
        if (m.segments.some((o) => o !== s && o.addr < to && o.addr + o.len > from)) continue;
        const got = this.tryRead(m.dev, from, to - from);
        if (got === undefined) continue;
        const leak = got.findIndex((b) => b !== 0);
        if (leak >= 0) violated(`mapping #${m.id} (${m.kind}): untrusted ${m.dev.bdf} reads ${got[leak]} at ${hex(from + leak)}, outside its buffer`);
      }
    }
  }

  /** The end of a sequence: nothing mapped, no IOVA, swiotlb empty, no report, clean unbind. */
  checkTeardown(): void {
    const k = this.kernel;
    k.flushAll();
    k.trace.clock.advance(IOVA_FQ_TIMEOUT_NS + 1);
    this.checkPending();
    for (const [i, d] of this.devs.entries()) {
      if (d.domain !== undefined && d.ops === "iommu" && d.domain.mappedBytes !== 0) violated(`${d.bdf}: ${d.domain.mappedBytes} bytes still mapped at the end`);
      if ((d.domain?.ptPagesPending ?? 0) !== 0) violated(`${d.bdf}: page-table pages still pending at the end`);
      const iovad = d.cookie?.iovad;
      if (iovad !== undefined) {
        iovad.flushRcaches();
        if (iovad.liveRanges !== this.#reservedRanges[i]) violated(`${d.bdf}: ${iovad.liveRanges - (this.#reservedRanges[i] ?? 0)} IOVA ranges still allocated at the end`);
      }
    }
    const used = k.swiotlb?.stats.used ?? 0;
    if (used !== 0) violated(`swiotlb: ${used} slots still used at the end`);
    if (k.debugReports().length > 0) violated(`dma-debug reported: ${k.debugReports().map((r) => r.message).join("; ")}`);
    for (const d of this.devs) {
      const r = k.unbind(d);
      if (r.leakedMappings.length > 0 || r.leakedIovaStates > 0) violated(`${d.bdf}: unbind found ${r.leakedMappings.length} mappings and ${r.leakedIovaStates} IOVA states`);
    }
    if (k.debugReports().length > 0) violated(`dma-debug reported at unbind: ${k.debugReports().map((r) => r.message).join("; ")}`);
    const free = this.platform.memory.allocator.freeBytes;
    if (free !== this.#initialFree) violated(`memory: ${this.#initialFree - free} bytes of RAM not given back`);
  }
}

function iovaInUse(d: DmaDevice): number {
  const c = d.cookie;
  if (c === undefined) return 0;
  let cached = 0;
  for (let order = 0; order < IOVA_RANGE_CACHE_MAX_SIZE; order++) cached += c.iovad.cachedPfns(order);
  return c.iovad.liveRanges - cached - (c.fq?.pendingTotal ?? 0);
}

export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Index of the first differing byte, -1 when equal (lengths included). */
export function firstDiff(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}
