import { expect, it } from "vitest";
// The mixed-MR README example, verbatim apart from the imports and the assertions at the end.
import { createDmaKernel } from "@dmasim/dma";
import { DmaBufSystem, GpuVramExporter } from "@dmasim/dmabuf";
import { Mm, MmSystem } from "@dmasim/hmm-odp";
import { GiB, MiB, PAGE_SIZE } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import { TestBdf, switchTopology } from "@dmasim/pcie-p2p/testing";
import { IB_ACCESS_LOCAL_WRITE, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE, IbWcStatus, IbWrOpcode, Mlx5Nic, ibConnectQp, ibCreateCq, ibCreateQp, ibPollCq, ibPostSend, ibUmemMixedOf, regMixedMr } from "./index.js";

it("README example: one MR over anonymous memory and a GPU dma-buf", () => {
  const platform = createPlatform(
    switchTopology({ ramBytes: 1 * GiB, switchPeer: { bars: [{ size: 64 * MiB }] }, switchSpare: {} }),
  );
  const kernel = createDmaKernel(platform, { iommuMode: "strict" });
  const mm = new Mm(new MmSystem(kernel));
  const nicA = new Mlx5Nic(kernel, TestBdf.CLIENT);
  const nicB = new Mlx5Nic(kernel, TestBdf.SWITCH_SPARE);
  const pdA = nicA.allocPd();
  const pdB = nicB.allocPd();
  const cqA = ibCreateCq(nicA, 64);
  const qpA = ibCreateQp(pdA, { sendCq: cqA, recvCq: cqA });
  ibConnectQp(qpA, ibCreateQp(pdB, { sendCq: ibCreateCq(nicB, 64), recvCq: ibCreateCq(nicB, 64) }));

  const gpu = new GpuVramExporter(new DmaBufSystem(kernel), { bdf: TestBdf.SWITCH_PEER });
  const vram = gpu.allocate(2 * MiB); // one 2 MiB block in VRAM
  const heap = mm.mmap(4 * PAGE_SIZE); // anonymous memory, nothing faulted in
  const mr = regMixedMr(nicB, pdB, [
    { kind: "va", mm, addr: heap, length: 4 * PAGE_SIZE }, // MR pages 0-3
    { kind: "dmabuf", buf: vram, offset: 0, length: 4 * PAGE_SIZE }, // MR pages 4-7
  ], IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ);
  const src = mm.mmap(2 * PAGE_SIZE);
  const local = nicA.regMr(pdA, mm, src, 2 * PAGE_SIZE, IB_ACCESS_LOCAL_WRITE);
  if (typeof mr === "number" || typeof local === "number") throw new Error("registration failed");

  // One WRITE across the boundary: the last page of the heap and the first page of the GPU buffer.
  mm.write(src, new Uint8Array(2 * PAGE_SIZE).fill(0x5a));
  ibPostSend(qpA, { wrId: 1, opcode: IbWrOpcode.RDMA_WRITE, sgList: [{ addr: src, length: 2 * PAGE_SIZE, lkey: local.lkey }], remoteAddr: 3 * PAGE_SIZE, rkey: mr.rkey });
  const [wc] = ibPollCq(cqA, 1);
  gpu.migrate(vram, "ram"); // the GPU's invalidate_mappings zaps MR pages 4-7 only
  const zapped = [mr.mtt[3] !== 0, mr.mtt[4] !== 0]; // [true, false]
  ibPostSend(qpA, { wrId: 2, opcode: IbWrOpcode.RDMA_READ, sgList: [{ addr: src, length: 64, lkey: local.lkey }], remoteAddr: 4 * PAGE_SIZE, rkey: mr.rkey });
  ibPollCq(cqA, 1); // faults, maps the buffer (now in RAM), waits for the copy's fence
  const [latency] = ibUmemMixedOf(mr)?.events.bySource() ?? [];
  nicB.deregMr(mr);

  expect(wc?.status).toBe(IbWcStatus.SUCCESS);
  expect(mm.read(heap + 3 * PAGE_SIZE, PAGE_SIZE)).toEqual(new Uint8Array(PAGE_SIZE).fill(0x5a));
  expect(gpu.cpuRead(vram, 0, PAGE_SIZE)).toEqual(new Uint8Array(PAGE_SIZE).fill(0x5a));
  expect(zapped).toEqual([true, false]);
  expect(mm.read(src, 64)).toEqual(new Uint8Array(64).fill(0x5a));
  expect(latency).toMatchObject({ source: vram.expName, kind: "dmabuf", events: 1, awaitingFirstDma: 0 });
  expect(latency?.firstDmaMaxNs).toBeGreaterThanOrEqual((2 * MiB) / gpu.copyBytesPerNs);
  expect(mr.deregistered).toBe(true);
  expect(vram.attachments.length).toBe(0);
  expect(nicB.dev.domain?.mappedBytes).toBe(0);
});
