import { bench, describe } from "vitest";
import { createDmaKernel } from "@dmasim/dma";
import { Mm, MmSystem } from "@dmasim/hmm-odp";
import { GiB, PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import { IB_ACCESS_LOCAL_WRITE, IB_ACCESS_ON_DEMAND, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE, IbWcStatus, IbWrOpcode } from "./constants.js";
import { Mlx5Nic } from "./nic.js";
import { ibConnectQp, ibCreateCq, ibCreateQp, ibPollCq, ibPostSend } from "./verbs.js";
import { kPageTableBytes } from "@dmasim/hmm-odp/internal";

// Targets (dma-debug off): register an ODP MR of 1 M pages (4 GiB) and fault it all in by RDMA WRITEs,
// each page given a distinct 64-byte pattern, then check every page by a 64-byte RDMA READ: <= 3 s; host
// memory of mm page table + pfn list + IO page table + MTT <= 40 B per 4 KiB page of MR. Runs once and
// writes its phases (wall and CPU time) and the bytes per page to stdout. RDMA_BENCH_PAGES overrides the
// page count (for a quick look on a small machine).

const RW = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ;

describe("ODP MR of 1 M pages (4 GiB): fault-in by RDMA WRITE, check by RDMA READ", () => {
  // tinybench may call the body more than once even with iterations 1: 4 GiB of simulated RAM is
  // materialised by each run, so only the first one runs.
  let ran = false;
  bench("register, 1 M faulting 64-byte RDMA WRITEs, 1 M 64-byte RDMA READs", () => {
    if (ran) return;
    ran = true;
    const PAGES = Number(process.env.RDMA_BENCH_PAGES ?? 1 << 20);
    const bdf = "0000:01:00.0";
    const platform = createPlatform({ memory: { ramBytes: Math.max(1 * GiB, PAGES * PAGE_SIZE + 1 * GiB) }, iommu: {}, endpoints: [{ bdf }] });
    const kernel = createDmaKernel(platform, { debug: "off", swiotlb: false });
    const sys = new MmSystem(kernel);
    const mm = new Mm(sys);
    const nic = new Mlx5Nic(kernel, bdf);
    const pd = nic.allocPd();
    const cq = ibCreateCq(nic, 16);
    const q1 = ibCreateQp(pd, { sendCq: cq, recvCq: cq });
    const q2 = ibCreateQp(pd, { sendCq: cq, recvCq: cq });
    ibConnectQp(q1, q2);
    const staging = mm.mmap(PAGE_SIZE);
    const local = nic.regMr(pd, mm, staging, PAGE_SIZE, RW);
    const a = mm.mmap(PAGES * PAGE_SIZE);
    const cpu = (c: NodeJS.CpuUsage) => (c.user + c.system) / 1000;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const mr = nic.regMr(pd, mm, a, PAGES * PAGE_SIZE, RW | IB_ACCESS_ON_DEMAND);
    if (typeof mr === "number" || typeof local === "number") throw new Error("registration failed");
    const t1 = performance.now();
    const c1 = process.cpuUsage(c0);
    const stagingPhys = (mm.pteAt(staging)?.pfn ?? 0) * PAGE_SIZE;
    const pat = new Uint8Array(64);
    const dv = new DataView(pat.buffer);
    const sgList = [{ addr: staging, length: 64, lkey: local.lkey }];
    let bad = 0;
    for (let i = 0; i < PAGES; i++) {
      dv.setUint32(0, i);
      dv.setUint32(60, ~i);
      kernel.memory.write(unsafePhysAddr(stagingPhys), pat);
      ibPostSend(q1, { wrId: i, opcode: IbWrOpcode.RDMA_WRITE, sgList, remoteAddr: a + i * PAGE_SIZE, rkey: mr.rkey });
      if (ibPollCq(cq, 1)[0]?.status !== IbWcStatus.SUCCESS) bad++;
    }
    const t2 = performance.now();
    const c2 = process.cpuUsage(c0);
    const got = new Uint8Array(64);
    const gv = new DataView(got.buffer);
    for (let i = 0; i < PAGES; i++) {
      ibPostSend(q1, { wrId: i, opcode: IbWrOpcode.RDMA_READ, sgList, remoteAddr: a + i * PAGE_SIZE, rkey: mr.rkey });
      if (ibPollCq(cq, 1)[0]?.status !== IbWcStatus.SUCCESS) bad++;
      kernel.memory.readInto(unsafePhysAddr(stagingPhys), got);
      if (gv.getUint32(0) !== i || gv.getUint32(60) !== ~i >>> 0) bad++;
    }
    const t3 = performance.now();
    const c3 = process.cpuUsage(c0);
    const bytes = mm[kPageTableBytes] + (mr.odp?.map.bookkeepingBytes ?? 0) + (nic.dev.domain?.ptBytes ?? 0) + mr.mttBytes;
    process.stdout.write(
      `${PAGES} pages: bad ${bad}, faults ${nic.stats.pageFaultEvents}; register ${(t1 - t0).toFixed(0)} ms wall / ${cpu(c1).toFixed(0)} ms cpu; ` +
        `faulting writes ${(t2 - t1).toFixed(0)} ms wall / ${(cpu(c2) - cpu(c1)).toFixed(0)} ms cpu (${((c2.system - c1.system) / 1000).toFixed(0)} ms system); ` +
        `64-byte read check ${(t3 - t2).toFixed(0)} ms wall / ${(cpu(c3) - cpu(c2)).toFixed(0)} ms cpu; total ${(t3 - t0).toFixed(0)} ms wall / ${cpu(c3).toFixed(0)} ms cpu; ` +
        `host bytes per page (mm + pfn list + IO page table + MTT) ${(bytes / PAGES).toFixed(1)}\n`,
    );
  }, { iterations: 1, time: 0, warmupIterations: 0, warmupTime: 0 });
});
