import { createDmaKernel } from "@dmasim/dma";
import type { DmaKernel } from "@dmasim/dma";
import { GpuVramExporter, DmaBufSystem, SystemHeap, VfioPciCoreDevice } from "@dmasim/dmabuf";
import type { DmaBuf, DmaBufDebugMode, DmaBufVersion } from "@dmasim/dmabuf";
import { GiB, MiB } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import type { Platform } from "@dmasim/pcie-p2p";
import { TestBdf, switchTopology } from "@dmasim/pcie-p2p/testing";
import { IB_ACCESS_LOCAL_WRITE, IB_ACCESS_REMOTE_ATOMIC, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE } from "./constants.js";
import type { IbMr } from "./mr.js";
import { Mlx5Nic } from "./nic.js";
import { nicPair } from "./test-fixtures.js";
import type { NicPair } from "./test-fixtures.js";

// Builders for the dmabuf MR tests (not exported from index.ts).

/**
 * NIC A (CLIENT) and NIC B (SWITCH_SPARE) under one switch with a GPU (SWITCH_PEER, 64 MiB of VRAM
 * behind BAR 0: P2P by bus address); a second GPU on its own root port (ROOT_PORT_DEVICE: P2P through
 * the host bridge, IOVA with DMA_ATTR_MMIO); a VFIO device (BRIDGE_PEER, a 16 MiB BAR: through the host
 * bridge); a system heap for RAM buffers; one IOMMU; QPs A↔B and a loopback pair on A.
 */
export interface DmabufRig extends NicPair {
  readonly platform: Platform;
  readonly kernel: DmaKernel;
  readonly sys: DmaBufSystem;
  readonly gpu: GpuVramExporter;
  readonly farGpu: GpuVramExporter;
  readonly vfio: VfioPciCoreDevice;
  readonly heap: SystemHeap;
}

export const ACCESS_ALL = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ | IB_ACCESS_REMOTE_ATOMIC;

export function dmabufRig(options: { debug?: DmaBufDebugMode; blockBytes?: number; vramBytes?: number; odpB?: boolean; strict?: boolean; copyBytesPerNs?: number; version?: DmaBufVersion } = {}): DmabufRig {
  const platform = createPlatform(
    switchTopology({
      ramBytes: 1 * GiB,
      hostBridgeP2p: "any",
      switchPeer: { bars: [{ size: 64 * MiB }] },
      switchSpare: {},
      bridgePeer: { bars: [{ size: 16 * MiB }] },
      rootPortDevice: { bars: [{ size: 64 * MiB }] },
    }),
  );
  const kernel = createDmaKernel(platform, { swiotlb: false, iommuMode: options.strict === false ? "lazy" : "strict" });
  const sys = new DmaBufSystem(kernel, { debug: options.debug ?? "throw", ...(options.version === undefined ? {} : { version: options.version }) });
  const gpuOpts = { blockBytes: options.blockBytes ?? 64 * 1024, ...(options.copyBytesPerNs === undefined ? {} : { copyBytesPerNs: options.copyBytesPerNs }), ...(options.vramBytes === undefined ? {} : { vramBytes: options.vramBytes }) };
  const gpu = new GpuVramExporter(sys, { bdf: TestBdf.SWITCH_PEER, ...gpuOpts });
  const farGpu = new GpuVramExporter(sys, { bdf: TestBdf.ROOT_PORT_DEVICE, ...gpuOpts });
  const vfio = new VfioPciCoreDevice(sys, TestBdf.BRIDGE_PEER);
  const heap = new SystemHeap(sys, { chunkBytes: 64 * 1024 });
  const nicA = new Mlx5Nic(kernel, TestBdf.CLIENT);
  const nicB = new Mlx5Nic(kernel, TestBdf.SWITCH_SPARE, options.odpB === false ? { odp: false } : {});
  return { platform, kernel, sys, gpu, farGpu, vfio, heap, ...nicPair(nicA, nicB) };
}

/** Reads `len` bytes of a buffer through its exporter's CPU view. */
export function cpuRead(rig: DmabufRig, buf: DmaBuf, offset: number, len: number): Uint8Array {
  if (buf.expName === `gpu:${rig.gpu.bdf}`) return rig.gpu.cpuRead(buf, offset, len);
  if (buf.expName === `gpu:${rig.farGpu.bdf}`) return rig.farGpu.cpuRead(buf, offset, len);
  return rig.heap.cpuRead(buf, offset, len);
}

/** Writes bytes into a buffer through its exporter's CPU view. */
export function cpuWrite(rig: DmabufRig, buf: DmaBuf, offset: number, bytes: Uint8Array): void {
  if (buf.expName === `gpu:${rig.gpu.bdf}`) rig.gpu.cpuWrite(buf, offset, bytes);
  else if (buf.expName === `gpu:${rig.farGpu.bdf}`) rig.farGpu.cpuWrite(buf, offset, bytes);
  else rig.heap.cpuWrite(buf, offset, bytes);
}

/** A VFIO BAR buffer of `len` bytes at `offset` of BAR 0. */
export function vfioBuf(rig: DmabufRig, offset: number, len: number): DmaBuf {
  const b = rig.vfio.featureDmaBuf({ regionIndex: 0, openFlags: 0, flags: 0, dmaRanges: [{ offset, length: len }] });
  if (typeof b === "number") throw new Error(`VFIO_DEVICE_FEATURE_DMA_BUF: ${b}`);
  return b;
}

/** The MR or a thrown error (tests that expect registration to succeed). */
export function mustMr(mr: IbMr | number): IbMr {
  if (typeof mr === "number") throw new Error(`ibv_reg_dmabuf_mr returned ${mr}`);
  return mr;
}

/** Nothing left: no dma-buf, attachment or mapping, no IOVA mapped for either NIC. */
export function leftovers(rig: DmabufRig): { buffers: number; attachments: number; mappings: number; mappedA: number; mappedB: number } {
  const l = rig.sys.leaks();
  return { ...l, mappedA: rig.nicA.dev.domain?.mappedBytes ?? 0, mappedB: rig.nicB.dev.domain?.mappedBytes ?? 0 };
}
