import { DmaBufSystem, GpuVramExporter, VfioPciCoreDevice } from "@dmasim/dmabuf";
import type { DmaBufDebugMode, DmaBufVersion } from "@dmasim/dmabuf";
import { GiB, MiB } from "@dmasim/memory";
import type { PlatformSpec } from "@dmasim/pcie-p2p";
import { ReqOp } from "@dmasim/bio";
import type { BlkStatus } from "@dmasim/bio";
import type { NvmeDmabufCompletion } from "./driver.js";
import type { NvmeDmabufToken } from "./dmabuf-token.js";
import { createNvmeHost } from "./system.js";
import type { NvmeHost, NvmeSystemOptions } from "./system.js";

/** The drive, a GPU and a VFIO-owned device under one switch; another GPU on a second root port. */
export const Bdf = { NVME: "0000:02:00.0", GPU: "0000:03:00.0", VFIO: "0000:04:00.0", FAR_GPU: "0000:06:00.0" } as const;

function spec(): PlatformSpec {
  return {
    memory: { ramBytes: 1 * GiB },
    iommu: {},
    hostBridges: [{ id: "hb0", p2p: "same-host-bridge" }],
    rootPorts: [{ id: "rp0" }, { id: "rp1" }],
    switches: [{ id: "sw0", parent: "rp0", downstreamPorts: 3 }],
    endpoints: [
      { bdf: Bdf.NVME, parent: "sw0.dp0", bars: [{ size: 16 * 1024 }] },
      { bdf: Bdf.GPU, parent: "sw0.dp1", bars: [{ size: 16 * MiB }] },
      { bdf: Bdf.VFIO, parent: "sw0.dp2", bars: [{ size: 4 * MiB }] },
      { bdf: Bdf.FAR_GPU, parent: "rp1", bars: [{ size: 16 * MiB }] },
    ],
  };
}

/** What a dma-buf test needs: the host with the drive, the dma-buf system, both GPUs and the VFIO device. */
export interface DmabufRig extends NvmeHost {
  readonly sys: DmaBufSystem;
  readonly gpu: GpuVramExporter;
  readonly farGpu: GpuVramExporter;
  readonly vfio: VfioPciCoreDevice;
}

export function dmabufRig(options: NvmeSystemOptions & { readonly dmabufDebug?: DmaBufDebugMode; readonly blockBytes?: number; readonly version?: DmaBufVersion } = {}): DmabufRig {
  const host = createNvmeHost(spec(), Bdf.NVME, { namespaceBytes: 16 * MiB, queueDepth: 16, ...options });
  const sys = new DmaBufSystem(host.kernel, { debug: options.dmabufDebug ?? "throw", ...(options.version === undefined ? {} : { version: options.version }) });
  const blockBytes = options.blockBytes ?? 1 * MiB;
  return {
    ...host,
    sys,
    gpu: new GpuVramExporter(sys, { bdf: Bdf.GPU, blockBytes }),
    farGpu: new GpuVramExporter(sys, { bdf: Bdf.FAR_GPU, blockBytes }),
    vfio: new VfioPciCoreDevice(sys, Bdf.VFIO),
  };
}

/** Bytes 0..n-1 of a pattern that differs per seed. */
export function bytesOf(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 7 + seed * 31 + (i >>> 12)) & 0xff;
  return out;
}

/** The first byte at which `a` and `b` differ, or -1 (a diff of megabytes would take the reporter minutes). */
export function firstDiff(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : a.length;
}

/** Submits one request, lets the controller run it and polls its completion. */
export function io(host: NvmeHost, token: NvmeDmabufToken, op: ReqOp, sector: number, offset: number, len: number): { queued: BlkStatus; done: NvmeDmabufCompletion | undefined } {
  const queued = host.driver.queueDmabufRq(token, { op, sector, offset, len });
  host.controller.service(1);
  let done: NvmeDmabufCompletion | undefined;
  host.driver.poll(() => undefined, (c) => (done = c));
  return { queued, done };
}

export { ReqOp };
