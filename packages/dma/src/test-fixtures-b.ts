import { GiB, MiB } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import type { EndpointSpec, Platform, PlatformSpec } from "@dmasim/pcie-p2p";
import { TestBdf, switchTopology } from "@dmasim/pcie-p2p/testing";
import type { Counter, CounterSnapshot } from "@dmasim/trace";
import type { DmaDevice } from "./device.js";
import { createDmaKernel } from "./kernel.js";
import type { DmaKernel, DmaKernelOptions } from "./kernel.js";
import { TRUSTED_BDF, UNTRUSTED_BDF, makeKernel } from "./test-fixtures.js";

// Builders for the classic-API tests on top of the package's shared fixtures (test-fixtures.ts): the
// same trusted and untrusted endpoints, plus what those fixtures do not offer — a confidential guest,
// a P2P topology — and a counter-diff helper keyed by Counter.

export { pattern } from "./test-fixtures.js";

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
