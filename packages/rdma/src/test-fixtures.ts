import { createDmaKernel } from "@dmasim/dma";
import type { DmaKernel, DmaKernelOptions } from "@dmasim/dma";
import { DmirrorDevice, Mm, MmSystem } from "@dmasim/hmm-odp";
import { GiB, MiB, PAGE_SIZE } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import type { P2pdmaProvider, Platform } from "@dmasim/pcie-p2p";
import { TestBdf, switchTopology } from "@dmasim/pcie-p2p/testing";
import { IbWcStatus, IbWrOpcode } from "./constants.js";
import type { IbMr, IbPd } from "./mr.js";
import { Mlx5Nic } from "./nic.js";
import type { OdpDmaStrategy } from "./nic.js";
import { ibConnectQp, ibCreateCq, ibCreateQp, ibPollCq, ibPostSend } from "./verbs.js";
import type { IbCq, IbQp, IbSendWr, IbWc } from "./verbs.js";

// Shared builders for the package's tests (not exported from index.ts).

/**
 * Two NICs and two GPUs on the shared switch topology: NIC A is the switch's CLIENT, NIC B sits on the
 * spare switch port; GPU S (SWITCH_PEER, P2P by bus address) and GPU H (BRIDGE_PEER, P2P through the host
 * bridge) each expose a 4 MiB BAR as a P2P provider. One process (`mm`), one PD per NIC, a connected QP
 * pair A↔B and a loopback pair on A.
 */
export interface RdmaRig extends NicPair {
  readonly platform: Platform;
  readonly kernel: DmaKernel;
  readonly sys: MmSystem;
  readonly mm: Mm;
  readonly gpuSwitch: P2pdmaProvider;
  readonly gpuBridge: P2pdmaProvider;
  /** A device with device-private memory (a GPU that migrates process pages in and out). */
  readonly gpu: DmirrorDevice;
}

/** Two NICs with one PD and one CQ each, a connected QP pair between them and a loopback pair on A. */
export interface NicPair {
  readonly nicA: Mlx5Nic;
  readonly nicB: Mlx5Nic;
  readonly pdA: IbPd;
  readonly pdB: IbPd;
  readonly cqA: IbCq;
  readonly cqB: IbCq;
  /** A's end of the A↔B pair, and B's. */
  readonly qpA: IbQp;
  readonly qpB: IbQp;
  /** A loopback pair on NIC A. */
  readonly loopA: IbQp;
  readonly loopA2: IbQp;
}

/** The NIC pair every rig starts from (the verbs set-up of rdma-core's RC tests). */
export function nicPair(nicA: Mlx5Nic, nicB: Mlx5Nic): NicPair {
  const pdA = nicA.allocPd();
  const pdB = nicB.allocPd();
  const cqA = ibCreateCq(nicA, 4096);
  const cqB = ibCreateCq(nicB, 4096);
  const qpA = ibCreateQp(pdA, { sendCq: cqA, recvCq: cqA });
  const qpB = ibCreateQp(pdB, { sendCq: cqB, recvCq: cqB });
  ibConnectQp(qpA, qpB);
  const loopA = ibCreateQp(pdA, { sendCq: cqA, recvCq: cqA });
  const loopA2 = ibCreateQp(pdA, { sendCq: cqA, recvCq: cqA });
  ibConnectQp(loopA, loopA2);
  return { nicA, nicB, pdA, pdB, cqA, cqB, qpA, qpB, loopA, loopA2 };
}

export const NIC_A = TestBdf.CLIENT;
export const NIC_B = TestBdf.SWITCH_SPARE;

export function rdmaRig(options: DmaKernelOptions & { ramBytes?: number; odpDma?: OdpDmaStrategy } = {}): RdmaRig {
  const { ramBytes = 1 * GiB, odpDma, ...kernelOptions } = options;
  const platform = createPlatform(
    switchTopology({
      ramBytes,
      hostBridgeP2p: "same-host-bridge",
      switchPeer: { bars: [{ size: 4 * MiB }] },
      switchSpare: {},
      bridgePeer: { bars: [{ size: 4 * MiB }] },
    }),
  );
  const kernel = createDmaKernel(platform, { swiotlb: false, ...kernelOptions });
  const sys = new MmSystem(kernel);
  const mm = new Mm(sys);
  const nicA = new Mlx5Nic(kernel, NIC_A);
  const nicB = new Mlx5Nic(kernel, NIC_B, odpDma === undefined ? {} : { odpDma });
  const gpuSwitch = platform.addP2pdmaProvider(TestBdf.SWITCH_PEER, 0);
  const gpuBridge = platform.addP2pdmaProvider(TestBdf.BRIDGE_PEER, 0);
  const gpu = new DmirrorDevice(sys, { name: "gpu0", devmemPhys: 64 * GiB, devmemSize: 16 * MiB, ownerId: 0x20000 });
  return { platform, kernel, sys, mm, ...nicPair(nicA, nicB), gpuSwitch, gpuBridge, gpu };
}

/** A 64-byte (or `len`) pattern unique to `tag`. */
export function pattern(tag: number, len = 64): Uint8Array {
  const b = new Uint8Array(len);
  let x = (tag * 2654435761 + 12345) >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/** Posts one WR on `qp` and returns its completion (the WR runs at once in the model). */
export function postAndPoll(qp: IbQp, wr: IbSendWr): IbWc {
  const ret = ibPostSend(qp, wr);
  if (ret !== 0) throw new Error(`ib_post_send returned ${ret}`);
  const wc = ibPollCq(qp.sendCq, 1)[0];
  if (wc === undefined) throw new Error("no completion");
  return wc;
}

/** RDMA WRITE of `len` bytes from `local` (at `from`) to `remote` at `to`, through `qp`. */
export function rdmaWrite(qp: IbQp, local: IbMr, from: number, remote: IbMr, to: number, len: number, wrId = 1): IbWc {
  return postAndPoll(qp, { wrId, opcode: IbWrOpcode.RDMA_WRITE, sgList: [{ addr: from, length: len, lkey: local.lkey }], remoteAddr: to, rkey: remote.rkey });
}

/** RDMA READ of `len` bytes of `remote` at `from` into `local` at `to`. */
export function rdmaRead(qp: IbQp, local: IbMr, to: number, remote: IbMr, from: number, len: number, wrId = 2): IbWc {
  return postAndPoll(qp, { wrId, opcode: IbWrOpcode.RDMA_READ, sgList: [{ addr: to, length: len, lkey: local.lkey }], remoteAddr: from, rkey: remote.rkey });
}

export const OK = IbWcStatus.SUCCESS;
export { PAGE_SIZE };
