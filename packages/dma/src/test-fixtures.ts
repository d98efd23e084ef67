import { GiB, MiB, PAGE_SIZE, patternBytes, physAddr, unsafePhysAddr } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import type { Endpoint, EndpointSpec, IommuSpec, Platform, PlatformSpec } from "@dmasim/pcie-p2p";
import { TestBdf, switchTopology } from "@dmasim/pcie-p2p/testing";
import type { CounterSnapshot } from "@dmasim/trace";
import type { Counter } from "./counters.js";
import type { DmaDevice } from "./device.js";
import { createDmaKernel } from "./kernel.js";
import type { DmaKernel, DmaKernelOptions } from "./kernel.js";
import { unsafeDmaAddr } from "./index.js";

// Shared builders for the package's tests: one platform with a trusted and an untrusted endpoint behind
// one IOMMU, the DMA kernel on top, and buffers filled with a deterministic pattern. Not exported from
// index.ts: tests import it directly.

/** The trusted endpoint every fixture has. */
export const TRUSTED_BDF = "0000:01:00.0";
/** An endpoint behind an external-facing port: always a strict DMA domain, bounces unaligned ranges. */
export const UNTRUSTED_BDF = "0000:02:00.0";

export interface FixtureOptions extends DmaKernelOptions {
  /** RAM from address 0; default 4 GiB. */
  ramBytes?: number;
  /** The IOMMU unit; default `{}` (one unit, "iommu0"); `null` for a platform with no IOMMU at all. */
  iommu?: IommuSpec | null;
  /** Extra endpoints beyond the trusted and the untrusted one. */
  endpoints?: readonly EndpointSpec[];
}

export interface Fixture {
  readonly platform: Platform;
  readonly kernel: DmaKernel;
  /** The trusted device (TRUSTED_BDF). */
  readonly dev: DmaDevice;
  /** The untrusted device (UNTRUSTED_BDF). */
  readonly untrusted: DmaDevice;
  /** The endpoint (fabric side: dmaRead/dmaWrite) of a device. */
  endpoint(dev: DmaDevice | string): Endpoint;
  /** A counter's current value. */
  count(counter: Counter): number;
  /** How much each counter moved while `fn` ran. */
  delta<T>(fn: () => T, ...counters: Counter[]): { result: T; moved: number[] };
}

/** A platform with TRUSTED_BDF and UNTRUSTED_BDF (plus `endpoints`) and a DMA kernel over it. */
export function makeKernel(options: FixtureOptions = {}): Fixture {
  const { ramBytes = 4 * GiB, iommu = {}, endpoints = [], ...kernelOptions } = options;
  const platform = createPlatform({
    memory: { ramBytes },
    ...(iommu === null ? {} : { iommu }),
    endpoints: [{ bdf: TRUSTED_BDF }, { bdf: UNTRUSTED_BDF, untrusted: true }, ...endpoints],
  });
  const kernel = createDmaKernel(platform, kernelOptions);
  const counters = platform.trace.counters;
  return {
    platform,
    kernel,
    dev: kernel.device(TRUSTED_BDF),
    untrusted: kernel.device(UNTRUSTED_BDF),
    endpoint: (dev) => platform.endpoint(typeof dev === "string" ? dev : dev.bdf),
    count: (counter) => counters.get(counter),
    delta: (fn, ...which) => {
      const before = which.map((c) => counters.get(c));
      const result = fn();
      return { result, moved: which.map((c, i) => counters.get(c) - (before[i] ?? 0)) };
    },
  };
}

/** Deterministic bytes (see patternBytes in @dmasim/memory). */
export const pattern = patternBytes;

export interface TestBuffer {
  /** Physical address of the buffer's first byte. */
  readonly phys: number;
  readonly len: number;
  /** What was written to memory at `phys`. */
  readonly bytes: Uint8Array;
  /** First page of the allocation (phys - offset) and the number of pages, to free it. */
  readonly base: number;
  readonly pages: number;
}

export interface BufferOptions {
  /** Byte offset of the buffer inside its first page; default 0. */
  offset?: number;
  /** Seed of the pattern; default 1. */
  seed?: number;
  /** Allocate below this physical address (exclusive). */
  below?: number;
}

/**
 * Allocates whole pages for `len` bytes at `offset` into the first page and writes a pattern there
 * straight to memory (not through the CPU cache).
 */
export function allocBuffer(platform: Platform, len: number, options: BufferOptions = {}): TestBuffer {
  const { offset = 0, seed = 1, below } = options;
  const pages = Math.max(1, Math.ceil((offset + len) / PAGE_SIZE));
  const base = platform.memory.allocator.allocPages(pages, below === undefined ? {} : { below });
  const phys = base + offset;
  const bytes = pattern(len, seed);
  platform.memory.write(physAddr(phys), bytes);
  return { phys, len, bytes, base, pages };
}

/** Gives a buffer's pages back to the page allocator. */
export function freeBuffer(platform: Platform, buf: TestBuffer): void {
  platform.memory.allocator.freePages(unsafePhysAddr(buf.base), buf.pages);
}

/** The fault reason the device's IOMMU recorded last, or undefined. */
export function lastFaultReason(platform: Platform, bdf: string): string | undefined {
  const iommu = platform.iommuFor(bdf);
  const last = iommu?.faults().at(-1);
  return last?.device === bdf ? last.reason : undefined;
}

/** Runs a device read and returns the bytes, or the error it threw (a PcieAccessError on a fault). */
export function tryDmaRead(endpoint: Endpoint, addr: number, len: number): Uint8Array | Error {
  try {
    return endpoint.dmaRead(unsafeDmaAddr(addr), len);
  } catch (e) {
    if (e instanceof Error) return e;
    throw e;
  }
}

/** Runs a device write and returns undefined, or the error it threw. */
export function tryDmaWrite(endpoint: Endpoint, addr: number, bytes: Uint8Array): Error | undefined {
  try {
    endpoint.dmaWrite(unsafeDmaAddr(addr), bytes);
    return undefined;
  } catch (e) {
    if (e instanceof Error) return e;
    throw e;
  }
}

/**
 * Index of the first byte where `a` and `b` differ, or -1 when they are equal (lengths included).
 * Tests compare buffers with it: a deep-equality matcher walks typed arrays element by element, which
 * makes property runs over kilobytes of data far slower than the model they test.
 */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/** A one-line description of how `actual` differs from `expected`, or "equal". */
export function describeDifference(actual: Uint8Array, expected: Uint8Array): string {
  const i = firstDifference(actual, expected);
  if (i < 0) return "equal";
  const show = (x: Uint8Array): string => Array.from(x.subarray(i, i + 8), (v) => v.toString(16).padStart(2, "0")).join(" ");
  return `differ at byte ${i} of ${actual.length} (expected length ${expected.length}): got [${show(actual)}], expected [${show(expected)}]`;
}

// Builders for the classic-API tests on the same endpoints: `rig` adds what makeKernel does not offer (a
// confidential guest, a whole topology), `p2pRig` the shared P2P test topology, and `moved` a counter
// diff keyed by Counter.

export const DEV = TRUSTED_BDF;
export const UNTRUSTED = UNTRUSTED_BDF;

export interface Rig {
  readonly platform: Platform;
  readonly kernel: DmaKernel;
  /** The first endpoint's device (DEV unless a topology says otherwise). */
  readonly dev: DmaDevice;
  /** The device's view of the bus: what it reads and writes. */
  readonly ep: Platform["endpoints"][number];
}

export interface RigOptions {
  /** Kernel options; the swiotlb pool defaults to 4 MiB to keep set-up cheap. */
  readonly kernel?: DmaKernelOptions;
  /** Default 8 GiB, so buffers above 4 GiB exist for 32-bit masks. */
  readonly ramBytes?: number;
  /** Default true: one IOMMU serving every endpoint. */
  readonly iommu?: boolean;
  /** A confidential guest: RAM is private until shared. */
  readonly confidential?: boolean;
  /** Endpoints besides DEV and UNTRUSTED. */
  readonly endpoints?: readonly EndpointSpec[];
  /** A whole topology (host bridges, switches, endpoints); the first endpoint becomes `dev`. */
  readonly spec?: Partial<PlatformSpec>;
}

export function rig(options: RigOptions = {}): Rig {
  const ramBytes = options.ramBytes ?? 8 * GiB;
  const kernelOptions: DmaKernelOptions = { swiotlb: { bytes: 4 * MiB }, ...options.kernel };
  if (options.confidential !== true && options.spec === undefined) {
    const f = makeKernel({ ramBytes, iommu: options.iommu === false ? null : {}, endpoints: options.endpoints ?? [], ...kernelOptions });
    return { platform: f.platform, kernel: f.kernel, dev: f.dev, ep: f.endpoint(f.dev) };
  }
  const spec: PlatformSpec = {
    memory: { ramBytes, confidential: options.confidential ?? false },
    ...(options.iommu === false ? {} : { iommu: {} }),
    endpoints: [{ bdf: DEV }, { bdf: UNTRUSTED, untrusted: true }, ...(options.endpoints ?? [])],
    ...options.spec,
  };
  const platform = createPlatform(spec);
  const kernel = createDmaKernel(platform, kernelOptions);
  const bdf = spec.endpoints?.[0]?.bdf ?? DEV;
  return { platform, kernel, dev: kernel.device(bdf), ep: platform.endpoint(bdf) };
}

/** Runs `fn` and returns how much each counter moved. */
export function moved<T>(platform: Platform, fn: () => T): { result: T; get: (c: Counter) => number; diff: CounterSnapshot } {
  const before = platform.trace.counters.snapshot();
  const result = fn();
  const diff = platform.trace.counters.snapshot().diff(before);
  return { result, get: (c) => diff.get(c), diff };
}

/** RAM pages from the allocator, so they never overlap the swiotlb pool or coherent allocations. */
export function freshPages(platform: Platform, pages: number, options?: { below?: number }): number {
  return platform.memory.allocator.allocPages(pages, options);
}

/** Client under sw0.dp0, provider under sw0.dp1, another client alone on root port rp1 (pcie-p2p's test topology). */
export const CLIENT = TestBdf.CLIENT;
export const PROVIDER = TestBdf.SWITCH_PEER;
export const FAR_CLIENT = TestBdf.BRIDGE_PEER;

/**
 * The shared test topology (@dmasim/pcie-p2p/testing):
 * hb0 ─ rp0 ─ sw0 ─ dp0 ─ CLIENT
 *     │           └ dp1 ─ PROVIDER (BAR0 2 MiB)
 *     └ rp1 ─ FAR_CLIENT (BAR0 64 KiB)
 */
export function p2pRig(options: { hostBridgeP2p?: "none" | "same-host-bridge" | "any"; busOffset?: number; kernel?: DmaKernelOptions } = {}): Rig {
  const { hostBridges, rootPorts, switches, endpoints } = switchTopology({
    hostBridgeP2p: options.hostBridgeP2p ?? "none",
    busOffset: options.busOffset ?? 0,
    switchPorts: 2,
    switchPeer: { bars: [{ size: 2 * MiB }] },
    bridgePeer: { bars: [{ size: 64 * 1024 }] },
  });
  return rig({ kernel: options.kernel ?? {}, spec: { hostBridges, rootPorts, switches, endpoints } });
}
