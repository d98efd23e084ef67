// @dmasim/rdma: an mlx5-like NIC. RDMA verbs (PD, CQ, RC QP, ib_post_send) over memory regions whose
// MTT the NIC walks on every access. A pinned MR maps its pages at registration; an ODP MR maps nothing
// until the NIC touches a page: then a page-fault event makes the driver run hmm_range_fault, map the
// page and resume the QP. When the process drops the pages, the MTT entry is zapped before they go.
import { createDmaKernel } from "@dmasim/dma";
import { MADV_DONTNEED, Mm, MmSystem } from "@dmasim/hmm-odp";
import { GiB, PAGE_SIZE } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import {
  IB_ACCESS_LOCAL_WRITE,
  IB_ACCESS_ON_DEMAND,
  IB_ACCESS_REMOTE_WRITE,
  IbWcStatus,
  IbWrOpcode,
  Mlx5Nic,
  ibConnectQp,
  ibCreateCq,
  ibCreateQp,
  ibPollCq,
  ibPostSend,
} from "@dmasim/rdma";

const platform = createPlatform({ memory: { ramBytes: 1 * GiB }, iommu: {}, endpoints: [{ bdf: "0000:01:00.0" }, { bdf: "0000:02:00.0" }] });
const kernel = createDmaKernel(platform, { iommuMode: "strict" });
const sys = new MmSystem(kernel);
const mm = new Mm(sys);
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
console.log(`ODP MR registered: MTT entry 3 is ${odp.mtt[3] === 0 ? "empty" : "set"}`);

// An RDMA WRITE to page 3 of the ODP MR: NIC B faults, the driver maps the page, the write is replayed.
ibPostSend(qpA, { wrId: 1, opcode: IbWrOpcode.RDMA_WRITE, sgList: [{ addr: src, length: 15, lkey: local.lkey }], remoteAddr: dst + 3 * PAGE_SIZE, rkey: odp.rkey });
const [wc] = ibPollCq(cqA, 1);
console.log(`completion: ${wc?.status === IbWcStatus.SUCCESS ? "IB_WC_SUCCESS" : wc?.status}; NIC B page-fault events ${nicB.stats.pageFaultEvents}`);
console.log(`the process reads "${new TextDecoder().decode(mm.read(dst + 3 * PAGE_SIZE, 15))}"; MTT entry 3 is ${odp.mtt[3] === 0 ? "empty" : "set"}`);

mm.madvise(dst, 16 * PAGE_SIZE, MADV_DONTNEED); // the invalidation zaps the MTT entry before returning
console.log(`after MADV_DONTNEED: MTT entry 3 is ${odp.mtt[3] === 0 ? "empty" : "set"}`);
console.log(`dereg: ${nicB.deregMr(odp)}, ${nicA.deregMr(local)}`);
mm.exit();
console.log(`pages still in use after exit: ${sys.pagesInUse}`);
// Output:
// ODP MR registered: MTT entry 3 is empty
// completion: IB_WC_SUCCESS; NIC B page-fault events 1
// the process reads "hello over RDMA"; MTT entry 3 is set
// after MADV_DONTNEED: MTT entry 3 is empty
// dereg: 0, 0
// pages still in use after exit: 0
