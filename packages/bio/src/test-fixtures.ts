import { createDmaKernel } from "@dmasim/dma";
import type { DmaDevice, DmaKernel, DmaKernelOptions } from "@dmasim/dma";
import { MiB, PAGE_SIZE, physAddr } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import type { P2pdmaProvider, Platform } from "@dmasim/pcie-p2p";
import { TestBdf, switchTopology } from "@dmasim/pcie-p2p/testing";
import { Bio, ReqOp, bvecAt } from "./bio.js";
import type { BioVec } from "./bio.js";

// Test-only builders (not exported from index.ts). One platform, the shared test topology of
// @dmasim/pcie-p2p/testing: the DMA device under a switch with a
// peer whose BAR is P2P memory (BUS_ADDR), a peer on another root port of the same host bridge
// (THRU_HOST_BRIDGE), a peer behind a second host bridge (NOT_SUPPORTED) and an untrusted device.

export const NVME = TestBdf.CLIENT;
export const PEER_SWITCH = TestBdf.SWITCH_PEER;
export const PEER_HOST_BRIDGE = TestBdf.BRIDGE_PEER;
export const PEER_FAR = TestBdf.FAR_PEER;
export const UNTRUSTED = TestBdf.ROOT_PORT_DEVICE;

export interface Fixture {
  readonly platform: Platform;
  readonly kernel: DmaKernel;
  readonly dev: DmaDevice;
  readonly untrusted: DmaDevice;
  readonly viaSwitch: P2pdmaProvider;
  readonly viaHostBridge: P2pdmaProvider;
  readonly far: P2pdmaProvider;
}

export function makeFixture(options: DmaKernelOptions & { noIommu?: boolean } = {}): Fixture {
  const { noIommu = false, ...kernelOptions } = options;
  const platform = createPlatform(
    switchTopology({
      ramBytes: 256 * MiB,
      iommu: !noIommu,
      hostBridgeP2p: "same-host-bridge",
      switchPorts: 2,
      client: { bars: [{ size: 16 * 1024 }] },
      switchPeer: { bars: [{ size: 4 * MiB }] },
      bridgePeer: { bars: [{ size: 4 * MiB }] },
      farPeer: { bars: [{ size: 4 * MiB }] },
      rootPortDevice: { untrusted: true },
    }),
  );
  const kernel = createDmaKernel(platform, { swiotlb: { bytes: 1 * MiB }, cpus: 1, ...kernelOptions });
  return {
    platform,
    kernel,
    dev: kernel.device(NVME),
    untrusted: kernel.device(UNTRUSTED),
    viaSwitch: platform.addP2pdmaProvider(PEER_SWITCH, 0),
    viaHostBridge: platform.addP2pdmaProvider(PEER_HOST_BRIDGE, 0),
    far: platform.addP2pdmaProvider(PEER_FAR, 0),
  };
}

/** `count` pages of RAM from the allocator, filled with a pattern that differs per byte and per page. */
export function allocPages(f: Fixture, count: number, seed = 1): number {
  const phys = f.platform.memory.allocator.allocPages(count);
  fillPattern(f, phys, count * PAGE_SIZE, seed);
  return phys;
}

export function fillPattern(f: Fixture, phys: number, len: number, seed: number): void {
  const bytes = new Uint8Array(len);
  for (let i = 0; i < len; i++) bytes[i] = (i * 31 + seed * 7 + Math.floor(i / 4096) * 13) & 0xff;
  f.platform.memory.write(physAddr(phys), bytes);
}

/** A bio from (phys, len) pairs. */
export function bioOf(f: Fixture, op: ReqOp, sector: number, ranges: readonly (readonly [number, number])[]): Bio {
  const vecs: BioVec[] = ranges.map(([phys, len]) => bvecAt(physAddr(phys), len));
  return new Bio(f.platform.memory, { op, sector, vecs });
}

export const READ = ReqOp.READ;
export const WRITE = ReqOp.WRITE;

/** The bytes a request's bvecs describe, in order. */
export function requestBytes(f: Fixture, bios: readonly Bio[]): Uint8Array {
  const total = bios.reduce((n, b) => n + b.size, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const bio of bios) {
    for (const bv of bio.vecs) {
      out.set(f.platform.memory.read(physAddr(bv.page * PAGE_SIZE + bv.offset), bv.len), at);
      at += bv.len;
    }
  }
  return out;
}
