import { createDmaKernel, DmaDevice } from "@dmasim/dma";
import type { DmaKernel, DmaKernelOptions } from "@dmasim/dma";
import { GiB, MiB } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import type { Platform } from "@dmasim/pcie-p2p";
import { TestBdf, switchTopology } from "@dmasim/pcie-p2p/testing";
import { DmaBufSystem } from "./system.js";
import type { DmaBufDebugMode } from "./debug.js";

/**
 * The dma-buf test platform (switchTopology): the importer CLIENT and the GPU (SWITCH_PEER, a 64 MiB
 * BAR 0) under one switch — P2P by bus address; BRIDGE_PEER (another 64 MiB BAR) on its own root port —
 * P2P through the host bridge when `hostBridgeP2p` allows it. One IOMMU for all.
 */
export const IMPORTER = TestBdf.CLIENT;
export const GPU = TestBdf.SWITCH_PEER;
export const FAR_GPU = TestBdf.BRIDGE_PEER;

export interface DmaBufRig {
  readonly platform: Platform;
  readonly kernel: DmaKernel;
  readonly sys: DmaBufSystem;
  readonly importer: DmaDevice;
}

export function dmaBufRig(options: { debug?: DmaBufDebugMode; version?: "7.1" | "6.19"; hostBridgeP2p?: "none" | "any"; iommu?: boolean; kernel?: DmaKernelOptions; barBytes?: number; ramBytes?: number } = {}): DmaBufRig {
  const bar = options.barBytes ?? 64 * MiB;
  const spec = switchTopology({
    ramBytes: options.ramBytes ?? 1 * GiB,
    hostBridgeP2p: options.hostBridgeP2p ?? "any",
    iommu: options.iommu ?? true,
    switchPeer: { bars: [{ size: bar }] },
    bridgePeer: { bars: [{ size: bar }] },
  });
  const platform = createPlatform(spec);
  const kernel = createDmaKernel(platform, { iommuMode: "strict", swiotlb: false, ...options.kernel });
  const sys = new DmaBufSystem(kernel, { debug: options.debug ?? "throw", ...(options.version === undefined ? {} : { version: options.version }) });
  const importer = kernel.device(IMPORTER);
  return { platform, kernel, sys, importer };
}

/** A recognisable byte pattern. */
export function pattern(len: number, seed = 1): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = (i * 31 + seed * 7 + (i >>> 12)) & 0xff;
  return out;
}

/**
 * The index of the first byte where `got` differs from `want` (-1 when equal; the shorter length when
 * only the lengths differ). `expect(...).toEqual` on megabytes of typed array takes minutes.
 */
export function firstDiff(got: Uint8Array | number | undefined, want: Uint8Array): number {
  if (!(got instanceof Uint8Array)) return -2;
  const n = Math.min(got.length, want.length);
  for (let i = 0; i < n; i++) if (got[i] !== want[i]) return i;
  return got.length === want.length ? -1 : n;
}
