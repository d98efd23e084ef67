import { expect, it } from "vitest";
// The README example, verbatim apart from the imports and the assertions at the end.
import { createDmaKernel } from "@dmasim/dma";
import { MADV_DONTNEED, Mm, MmSystem } from "@dmasim/hmm-odp";
import { GiB, PAGE_SIZE } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import { IB_ACCESS_LOCAL_WRITE, IB_ACCESS_ON_DEMAND, IB_ACCESS_REMOTE_WRITE, IbWcStatus, IbWrOpcode, Mlx5Nic, ibConnectQp, ibCreateCq, ibCreateQp, ibPollCq, ibPostSend } from "./index.js";

it("README example", () => {
  const platform = createPlatform({ memory: { ramBytes: 1 * GiB }, iommu: {}, endpoints: [{ bdf: "0000:01:00.0" }, { bdf: "0000:02:00.0" }] });
  const kernel = createDmaKernel(platform, { iommuMode: "strict" });
  const sys = new MmSystem(kernel);
  const mm = new Mm(sys); // a process
  const nicA = new Mlx5Nic(kernel, "0000:01:00.0");
  const nicB = new Mlx5Nic(kernel, "0000:02:00.0");
  const pdA = nicA.allocPd();
  const pdB = nicB.allocPd();
  const cqA = ibCreateCq(nicA, 64);
  const qpA = ibCreateQp(pdA, { sendCq: cqA, recvCq: cqA });
  const qpB = ibCreateQp(pdB, { sendCq: ibCreateCq(nicB, 64), recvCq: ibCreateCq(nicB, 64) });
  ibConnectQp(qpA, qpB);

  const src = mm.mmap(PAGE_SIZE);
  mm.write(src, new TextEncoder().encode("hello over RDMA"));
  const local = nicA.regMr(pdA, mm, src, PAGE_SIZE, IB_ACCESS_LOCAL_WRITE); // pinned
  const dst = mm.mmap(16 * PAGE_SIZE); // nothing faulted in yet
  const odp = nicB.regMr(pdB, mm, dst, 16 * PAGE_SIZE, IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_ON_DEMAND);
  if (typeof local === "number" || typeof odp === "number") throw new Error("ibv_reg_mr failed");

  // NIC B finds no MTT entry: page-fault event, hmm_range_fault, hmm_dma_map_pfn, UMR, resume, replay.
  ibPostSend(qpA, { wrId: 1, opcode: IbWrOpcode.RDMA_WRITE, sgList: [{ addr: src, length: 15, lkey: local.lkey }], remoteAddr: dst + 3 * PAGE_SIZE, rkey: odp.rkey });
  const [wc] = ibPollCq(cqA, 1);
  const landed = new TextDecoder().decode(mm.read(dst + 3 * PAGE_SIZE, 15));

  mm.madvise(dst, 16 * PAGE_SIZE, MADV_DONTNEED); // the invalidation zaps NIC B's MTT entry before it returns
  const after = odp.mtt[3];

  expect(wc?.status).toBe(IbWcStatus.SUCCESS);
  expect(landed).toBe("hello over RDMA");
  expect(nicB.stats.pageFaultEvents).toBe(1);
  expect(after).toBe(0);
  expect(nicB.deregMr(odp)).toBe(0);
  expect(nicA.deregMr(local)).toBe(0);
  mm.exit();
  expect(sys.pagesInUse).toBe(0);
});
