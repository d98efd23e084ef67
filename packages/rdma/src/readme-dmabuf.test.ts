import { expect, it } from "vitest";
// The README's dmabuf MR example, verbatim apart from the imports and the assertions at the end.
import { createDmaKernel } from "@dmasim/dma";
import { DmaBufSystem, GpuVramExporter, dmaBufPut } from "@dmasim/dmabuf";
import { GiB, MiB } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import { TestBdf, switchTopology } from "@dmasim/pcie-p2p/testing";
import { IB_ACCESS_LOCAL_WRITE, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE, IbWcStatus, IbWrOpcode, Mlx5Nic, RdmaDmabufCounter, ibConnectQp, ibCreateCq, ibCreateQp, ibPollCq, ibPostSend } from "./index.js";

it("README dmabuf MR example", () => {
  const platform = createPlatform(switchTopology({ ramBytes: 1 * GiB, switchPeer: { bars: [{ size: 64 * MiB }] }, switchSpare: {} }));
  const kernel = createDmaKernel(platform, { iommuMode: "strict" });
  const dmabufs = new DmaBufSystem(kernel);
  const gpu = new GpuVramExporter(dmabufs, { bdf: TestBdf.SWITCH_PEER }); // VRAM behind BAR 0
  const nicA = new Mlx5Nic(kernel, TestBdf.CLIENT);
  const nicB = new Mlx5Nic(kernel, TestBdf.SWITCH_SPARE);
  const pdA = nicA.allocPd();
  const pdB = nicB.allocPd();
  const cqA = ibCreateCq(nicA, 64);
  const qpA = ibCreateQp(pdA, { sendCq: cqA, recvCq: cqA });
  ibConnectQp(qpA, ibCreateQp(pdB, { sendCq: ibCreateCq(nicB, 64), recvCq: ibCreateCq(nicB, 64) }));

  const src = gpu.allocate(2 * MiB, "ram");
  const dst = gpu.allocate(2 * MiB, "vram");
  gpu.cpuWrite(src, 0, new TextEncoder().encode("hello, VRAM"));
  const access = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ;
  const local = nicA.regDmabufMr(pdA, src, 0, 2 * MiB, 0x1000_0000, access, { kind: "pinned" });
  const remote = nicB.regDmabufMr(pdB, dst, 0, 2 * MiB, 0x2000_0000, access); // dynamic, the exporter's sg_table
  if (typeof local === "number" || typeof remote === "number") throw new Error("ibv_reg_dmabuf_mr failed");

  const write = { wrId: 1, opcode: IbWrOpcode.RDMA_WRITE, sgList: [{ addr: 0x1000_0000, length: 11, lkey: local.lkey }], remoteAddr: 0x2000_0000, rkey: remote.rkey };
  ibPostSend(qpA, write); // NIC B writes VRAM by bus address, through the switch
  gpu.migrate(dst, "ram"); // copy + KERNEL fence, invalidate: NIC B zaps its MTT and unmaps
  ibPostSend(qpA, { ...write, remoteAddr: 0x2000_0000 + 4096 }); // page fault, map again, wait for the fence
  const [first, second] = ibPollCq(cqA, 2);
  const landed = new TextDecoder().decode(gpu.cpuRead(dst, 0, 11)) + new TextDecoder().decode(gpu.cpuRead(dst, 4096, 11));

  expect([first?.status, second?.status]).toEqual([IbWcStatus.SUCCESS, IbWcStatus.SUCCESS]);
  expect(landed).toBe("hello, VRAMhello, VRAM");
  expect(nicB.stats.pageFaultEvents).toBe(1);
  expect(kernel.trace.counters.get(RdmaDmabufCounter.DmabufMrInvalidations)).toBe(1);
  expect(nicB.deregMr(remote)).toBe(0);
  expect(nicA.deregMr(local)).toBe(0);
  dmaBufPut(src);
  dmaBufPut(dst);
  gpu.reap();
  expect(dmabufs.leaks()).toEqual({ buffers: 0, attachments: 0, mappings: 0 });
  expect(nicB.dev.domain?.mappedBytes).toBe(0);
});
