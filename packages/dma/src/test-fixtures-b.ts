import { GiB, MiB } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import type { EndpointSpec, Platform, PlatformSpec } from "@dmasim/pcie-p2p";
import type { Counter, CounterSnapshot } from "@dmasim/trace";
import { createDmaKernel } from "./kernel.js";
import type { DmaKernel, DmaKernelOptions } from "./kernel.js";
import type { DmaDevice } from "./device.js";

// Shared builders for the classic-API tests: one platform with a trusted and an untrusted endpoint.

export const DEV = "0000:01:00.0";
export const UNTRUSTED = "0000:02:00.0";

export interface Rig {
  readonly platform: Platform;
  readonly kernel: DmaKernel;
  readonly dev: DmaDevice;
  /** The device's view of the bus: what it reads and writes. */
  readonly ep: Platform["endpoints"][number];
}

export interface RigOptions {
  readonly kernel?: DmaKernelOptions;
  /** Default 8 GiB, so buffers above 4 GiB exist for 32-bit masks. */
  readonly ramBytes?: number;
  /** Default true: one IOMMU serving every endpoint. */
  readonly iommu?: boolean;
  readonly confidential?: boolean;
  readonly endpoints?: readonly EndpointSpec[];
  readonly spec?: Partial<PlatformSpec>;
}

export function rig(options: RigOptions = {}): Rig {
  const spec: PlatformSpec = {
    memory: { ramBytes: options.ramBytes ?? 8 * GiB, confidential: options.confidential ?? false },
    ...(options.iommu === false ? {} : { iommu: {} }),
    endpoints: options.endpoints ?? [{ bdf: DEV }, { bdf: UNTRUSTED, untrusted: true }],
    ...options.spec,
  };
  const platform = createPlatform(spec);
  const kernel = createDmaKernel(platform, { swiotlb: { bytes: 4 * MiB }, ...options.kernel });
  const bdf = spec.endpoints?.[0]?.bdf ?? DEV;
  return { platform, kernel, dev: kernel.device(bdf), ep: platform.endpoint(bdf) };
}

/** Bytes that differ at every offset and between seeds, so a misplaced copy cannot pass. */
export function pattern(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 131 + seed * 17 + (i >> 8)) & 0xff;
  return out;
}

/** Runs `fn` and returns how much each counter moved. */
export function moved<T>(platform: Platform, fn: () => T): { result: T; get: (c: Counter) => number; diff: CounterSnapshot } {
  const before = platform.trace.counters.snapshot();
  const result = fn();
  const diff = platform.trace.counters.snapshot().diff(before);
  return { result, get: (c) => diff.get(c), diff };
}

/** RAM pages from the allocator, so they never overlap the swiotlb pool or coherent allocations. */
export function allocBuffer(platform: Platform, pages: number, options?: { below?: number }): number {
  return platform.memory.allocator.allocPages(pages, options);
}

/** Client under sw0.dp0, provider under sw0.dp1, another client alone on root port rp1 (pcie-p2p's test topology). */
export const CLIENT = "0000:02:00.0";
export const PROVIDER = "0000:03:00.0";
export const FAR_CLIENT = "0000:05:00.0";

/**
 * hb0 ─ rp0 ─ sw0 ─ dp0 ─ CLIENT
 *     │           └ dp1 ─ PROVIDER (BAR0 2 MiB)
 *     └ rp1 ─ FAR_CLIENT (BAR0 64 KiB)
 */
export function p2pRig(options: { hostBridgeP2p?: "none" | "same-host-bridge" | "any"; busOffset?: number; kernel?: DmaKernelOptions } = {}): Rig {
  return rig({
    kernel: options.kernel ?? {},
    spec: {
      hostBridges: [{ id: "hb0", p2p: options.hostBridgeP2p ?? "none", busOffset: options.busOffset ?? 0 }],
      rootPorts: [{ id: "rp0" }, { id: "rp1" }],
      switches: [{ id: "sw0", parent: "rp0", downstreamPorts: 2 }],
      endpoints: [
        { bdf: CLIENT, parent: "sw0.dp0" },
        { bdf: PROVIDER, parent: "sw0.dp1", bars: [{ size: 2 * MiB }] },
        { bdf: FAR_CLIENT, parent: "rp1", bars: [{ size: 64 * 1024 }] },
      ],
    },
  });
}
