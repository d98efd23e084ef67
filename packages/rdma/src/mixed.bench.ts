import { bench, describe } from "vitest";
import { createDmaKernel } from "@dmasim/dma";
import { DmaBufSystem, GpuVramExporter, VfioPciCoreDevice } from "@dmasim/dmabuf";
import { DmirrorDevice, Mm, MmSystem, hmmDmirrorCmd } from "@dmasim/hmm-odp";
import { GiB, MiB, PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import { TestBdf, switchTopology } from "@dmasim/pcie-p2p/testing";
import { IB_ACCESS_LOCAL_WRITE, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE, IbWcStatus, IbWrOpcode } from "./constants.js";
import { regMixedMr } from "./mixed-mr.js";
import type { MixedSegmentSpec } from "./mixed-mr.js";
import { Mlx5Nic } from "./nic.js";
import { ibConnectQp, ibCreateCq, ibCreateQp, ibPollCq, ibPostSend } from "./verbs.js";

// Target (dma-debug off): ONE mixed MR of 1 M pages (4 GiB) over six backing kinds — anonymous memory,
// a THP region, a peer BAR mmap, device-private pages, a GPU dma-buf (2 MiB blocks, 3 of 4 in VRAM by
// bus address, 1 of 4 in RAM through the IOMMU) and a VFIO BAR dma-buf (through the host bridge) —
// faulted in by RDMA WRITEs, each page given a distinct 64-byte pattern, then each page checked by a
// 64-byte RDMA READ: <= 3 s. Runs once and writes its phases (wall and CPU time) to stdout.
// RDMA_BENCH_PAGES scales it down (a multiple of 4096 pages) for a quick look.

const RW = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ;

describe("mixed MR of 1 M pages (4 GiB, six kinds): fault-in by RDMA WRITE, check by RDMA READ", () => {
  let ran = false;
  bench("register, 1 M faulting 64-byte RDMA WRITEs, 1 M 64-byte RDMA READs", () => {
    if (ran) return;
    ran = true;
    try {
      run();
    } catch (e) {
      process.stdout.write(`mixed.bench failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
      throw e;
    }
  }, { iterations: 1, time: 0, warmupIterations: 0, warmupTime: 0 });
});

function run(): void {
    const PAGES = Number(process.env.RDMA_BENCH_PAGES ?? 1 << 20);
    const unit = PAGES / 64; // 64 MiB at 1 M pages
    const sizes = { anon: PAGES - 15 * unit, thp: 8 * unit, bar: unit, devpriv: unit, gpu: 4 * unit, vfio: unit };
    const platform = createPlatform(
      switchTopology({
        ramBytes: PAGES * PAGE_SIZE + 2 * GiB,
        hostBridgeP2p: "same-host-bridge",
        switchPeer: { bars: [{ size: sizes.bar * PAGE_SIZE }, { size: sizes.gpu * PAGE_SIZE }] },
        switchSpare: {},
        bridgePeer: { bars: [{ size: 4 * MiB }, { size: sizes.vfio * PAGE_SIZE }] },
      }),
    );
    const kernel = createDmaKernel(platform, { debug: "off", swiotlb: false });
    const sys = new MmSystem(kernel);
    const mm = new Mm(sys);
    const nic = new Mlx5Nic(kernel, TestBdf.SWITCH_SPARE);
    const pd = nic.allocPd();
    const cq = ibCreateCq(nic, 16);
    const q1 = ibCreateQp(pd, { sendCq: cq, recvCq: cq });
    const q2 = ibCreateQp(pd, { sendCq: cq, recvCq: cq });
    ibConnectQp(q1, q2);
    const staging = mm.mmap(PAGE_SIZE);
    const local = nic.regMr(pd, mm, staging, PAGE_SIZE, RW);
    // The six kinds.
    const anon = mm.mmap(sizes.anon * PAGE_SIZE);
    const thp = mm.mmap(sizes.thp * PAGE_SIZE, { hugepage: true });
    const barProvider = platform.addP2pdmaProvider(TestBdf.SWITCH_PEER, 0);
    const bar = mm.mmap(sizes.bar * PAGE_SIZE, { p2p: barProvider, shared: true });
    const gpuDev = new DmirrorDevice(sys, { name: "gpu0", devmemPhys: 64 * GiB, devmemSize: sizes.devpriv * PAGE_SIZE, ownerId: 0x20000 });
    const devpriv = mm.mmap(sizes.devpriv * PAGE_SIZE);
    for (let i = 0; i < sizes.devpriv; i++) mm.write(devpriv + i * PAGE_SIZE, new Uint8Array(8));
    const mirror = gpuDev.open(mm);
    if (mirror.migrateToDev(hmmDmirrorCmd(devpriv, sizes.devpriv)) !== 0) throw new Error("migration to the GPU failed");
    const dmabufs = new DmaBufSystem(kernel, { debug: "off" });
    const gpu = new GpuVramExporter(dmabufs, { bdf: TestBdf.SWITCH_PEER, bar: 1 });
    const vram = gpu.allocate(sizes.gpu * PAGE_SIZE);
    const blocks = vram.size / gpu.blockBytes;
    gpu.migrate(vram, "ram", Array.from({ length: Math.floor(blocks / 4) }, (_, i) => 4 * i + 1));
    const vfio = new VfioPciCoreDevice(dmabufs, TestBdf.BRIDGE_PEER);
    const vfioBuf = vfio.featureDmaBuf({ regionIndex: 1, openFlags: 0, flags: 0, dmaRanges: [{ offset: 0, length: sizes.vfio * PAGE_SIZE }] });
    if (typeof vfioBuf === "number" || typeof local === "number") throw new Error("setup failed");
    const specs: MixedSegmentSpec[] = [
      { kind: "va", mm, addr: anon, length: sizes.anon * PAGE_SIZE },
      { kind: "dmabuf", buf: vram, offset: 0, length: sizes.gpu * PAGE_SIZE },
      { kind: "va", mm, addr: thp, length: sizes.thp * PAGE_SIZE },
      { kind: "dmabuf", buf: vfioBuf, offset: 0, length: sizes.vfio * PAGE_SIZE },
      { kind: "va", mm, addr: bar, length: sizes.bar * PAGE_SIZE },
      { kind: "va", mm, addr: devpriv, length: sizes.devpriv * PAGE_SIZE },
    ];
    const cpu = (c: NodeJS.CpuUsage): number => (c.user + c.system) / 1000;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const mr = regMixedMr(nic, pd, specs, RW);
    if (typeof mr === "number") throw new Error(`registration failed: ${mr}`);
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
      ibPostSend(q1, { wrId: i, opcode: IbWrOpcode.RDMA_WRITE, sgList, remoteAddr: i * PAGE_SIZE, rkey: mr.rkey });
      if (ibPollCq(cq, 1)[0]?.status !== IbWcStatus.SUCCESS) bad++;
    }
    const t2 = performance.now();
    const c2 = process.cpuUsage(c0);
    const got = new Uint8Array(64);
    const gv = new DataView(got.buffer);
    for (let i = 0; i < PAGES; i++) {
      ibPostSend(q1, { wrId: i, opcode: IbWrOpcode.RDMA_READ, sgList, remoteAddr: i * PAGE_SIZE, rkey: mr.rkey });
      if (ibPollCq(cq, 1)[0]?.status !== IbWcStatus.SUCCESS) bad++;
      kernel.memory.readInto(unsafePhysAddr(stagingPhys), got);
      if (gv.getUint32(0) !== i || gv.getUint32(60) !== ~i >>> 0) bad++;
    }
    const t3 = performance.now();
    const c3 = process.cpuUsage(c0);
    process.stdout.write(
      `${PAGES} pages in 6 kinds (${Object.entries(sizes).map(([k, v]) => `${k} ${v}`).join(", ")}): bad ${bad}, faults ${nic.stats.pageFaultEvents}; register ${(t1 - t0).toFixed(0)} ms wall / ${cpu(c1).toFixed(0)} ms cpu; ` +
        `faulting writes ${(t2 - t1).toFixed(0)} ms wall / ${(cpu(c2) - cpu(c1)).toFixed(0)} ms cpu; ` +
        `64-byte read check ${(t3 - t2).toFixed(0)} ms wall / ${(cpu(c3) - cpu(c2)).toFixed(0)} ms cpu; total ${(t3 - t0).toFixed(0)} ms wall / ${cpu(c3).toFixed(0)} ms cpu\n`,
    );
}
