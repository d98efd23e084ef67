import { createDmaKernel } from "@dmasim/dma";
import type { DmaDevice, DmaKernel, DmaKernelOptions } from "@dmasim/dma";
import { GiB, MiB, PAGE_SIZE } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import type { EndpointSpec, Platform } from "@dmasim/pcie-p2p";
import { DmirrorDevice } from "./dmirror.js";
import type { Dmirror } from "./dmirror.js";
import { MmSystem } from "./mm-system.js";
import { Mm } from "./mm.js";

// Shared builders for the package's tests (not exported from index.ts).

export const DEV0_BDF = "0000:01:00.0";
export const DEV1_BDF = "0000:02:00.0";
/** Device-private memory of dmirror0 and dmirror1: in a hole far above RAM. */
export const DEVMEM0 = 64 * GiB;
export const DEVMEM1 = 64 * GiB + 256 * MiB;
/** HMM_BUFFER_SIZE of hmm-tests.c: 4 MiB, 1024 pages. */
export const HMM_BUFFER_SIZE = 1024 * PAGE_SIZE;

export interface HmmRig {
  readonly platform: Platform;
  readonly kernel: DmaKernel;
  readonly sys: MmSystem;
  readonly mm: Mm;
  /** /dev/hmm_dmirror0 and 1 (both MEMORY_DEVICE_PRIVATE), or 2 and 3 (both MEMORY_DEVICE_COHERENT) with `coherent`. */
  readonly mdev0: DmirrorDevice;
  readonly mdev1: DmirrorDevice;
  readonly dev0: DmaDevice;
  readonly dev1: DmaDevice;
  /** hmm_open(0): a mirror of `mm` (or another mm) on device 0. */
  readonly open: (which?: 0 | 1, mm?: Mm) => Dmirror;
}

export interface RigOptions extends DmaKernelOptions {
  ramBytes?: number;
  devmemBytes?: number;
  endpoints?: readonly EndpointSpec[];
  /** Coherent device memory (hmm-tests.c's hmm_device_coherent variants) instead of device-private. */
  coherent?: boolean;
}

export function hmmRig(options: RigOptions = {}): HmmRig {
  const { ramBytes = 1 * GiB, devmemBytes = 64 * MiB, endpoints = [], coherent = false, ...kernelOptions } = options;
  const platform = createPlatform({ memory: { ramBytes }, iommu: {}, endpoints: [{ bdf: DEV0_BDF }, { bdf: DEV1_BDF }, ...endpoints] });
  const kernel = createDmaKernel(platform, { swiotlb: false, ...kernelOptions });
  const sys = new MmSystem(kernel);
  const mm = new Mm(sys);
  const mdev0 = coherent
    ? new DmirrorDevice(sys, { name: "hmm_dmirror2", devmemSize: devmemBytes, coherent })
    : new DmirrorDevice(sys, { name: "hmm_dmirror0", devmemPhys: DEVMEM0, devmemSize: devmemBytes, ownerId: 0x10000 });
  const mdev1 = coherent
    ? new DmirrorDevice(sys, { name: "hmm_dmirror3", devmemSize: devmemBytes, coherent })
    : new DmirrorDevice(sys, { name: "hmm_dmirror1", devmemPhys: DEVMEM1, devmemSize: devmemBytes, ownerId: 0x10001 });
  return {
    platform,
    kernel,
    sys,
    mm,
    mdev0,
    mdev1,
    dev0: kernel.device(DEV0_BDF),
    dev1: kernel.device(DEV1_BDF),
    open: (which = 0, m = mm) => (which === 0 ? mdev0 : mdev1).open(m),
  };
}

/** An Int32Array view of a byte buffer (hmm-tests fills buffers as int arrays). */
export function ints(bytes: Uint8Array): Int32Array {
  return new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

/** Fills user memory at `addr` with the ints f(i) through CPU writes. */
export function cpuFillInts(mm: Mm, addr: number, size: number, f: (i: number) => number): void {
  const b = new Uint8Array(size);
  const v = ints(b);
  for (let i = 0; i < v.length; i++) v[i] = f(i);
  mm.write(addr, b);
}

/** The ints of user memory at `addr` read by the CPU. */
export function cpuInts(mm: Mm, addr: number, size: number): Int32Array {
  return ints(mm.read(addr, size));
}

/** The index of the first int where `got[i] !== f(i)`, or -1 (a compact assertion over big buffers). */
export function firstMismatch(got: Int32Array, f: (i: number) => number, from = 0, to = got.length): number {
  for (let i = from; i < to; i++) if (got[i] !== f(i)) return i;
  return -1;
}
