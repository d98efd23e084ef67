import { DmaBufCounter, dmaBufPut } from "@dmasim/dmabuf";
import type { DmaBuf } from "@dmasim/dmabuf";
import { PAGE_SIZE, physAddr } from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import { Mm, MmSystem } from "@dmasim/hmm-odp";
import { IB_ACCESS_ON_DEMAND, IbWcStatus, IbWrOpcode, MLX5_IB_MTT_READ, MLX5_IB_MTT_WRITE } from "./constants.js";
import { RdmaDmabufCounter } from "./dmabuf-counters.js";
import type { IbMr } from "./mr.js";
import { ibConnectQp, ibCreateQp, ibPollCq, ibPostRecv, ibPostSend } from "./verbs.js";
import { ACCESS_ALL, cpuRead, cpuWrite, dmabufRig, leftovers, mustMr, vfioBuf } from "./test-dmabuf.js";
import type { DmabufRig } from "./test-dmabuf.js";
import { pattern, postAndPoll, rdmaRead, rdmaWrite } from "./test-fixtures.js";
import type { UmemDmabufKind, UmemDmabufMapping } from "./umem-dmabuf.js";

const KINDS: readonly UmemDmabufKind[] = ["dynamic", "pinned", "revocable"];
const MAPPINGS: readonly UmemDmabufMapping[] = ["sgt", "phys"];
type Where = "vram-switch" | "vram-host-bridge" | "ram";
const WHERE: readonly Where[] = ["vram-switch", "vram-host-bridge", "ram"];
const SIZE = 256 * 1024;

function bufferAt(rig: DmabufRig, where: Where, size = SIZE): DmaBuf {
  if (where === "vram-switch") return rig.gpu.allocate(size, "vram");
  if (where === "vram-host-bridge") return rig.farGpu.allocate(size, "vram");
  return rig.heap.allocate(size);
}

const mttDma = (e: number): number => e - (e % 4);

describe("ibv_reg_dmabuf_mr: traffic over every kind, mapping type and backing, every byte checked", () => {
  for (const kind of KINDS) {
    for (const mapping of MAPPINGS) {
      for (const where of WHERE) {
        it(`${kind} / ${mapping} / ${where}: WRITE, READ, SEND, atomics; dereg leaves nothing`, () => {
          const rig = dmabufRig();
          const remoteBuf = bufferAt(rig, where);
          const localBuf = rig.heap.allocate(SIZE);
          // The remote MR starts 8 KiB into the buffer; its iova is a user-chosen address at the same page offset.
          const iova = 0x7f00_0000_2000;
          const remote = mustMr(rig.nicB.regDmabufMr(rig.pdB, remoteBuf, 2 * PAGE_SIZE, SIZE - 2 * PAGE_SIZE, iova, ACCESS_ALL, { kind, mapping }));
          const local = mustMr(rig.nicA.regDmabufMr(rig.pdA, localBuf, 0, SIZE, 0x1000_0000, ACCESS_ALL, { kind, mapping }));
          expect(remote.enabled).toBe(true);
          expect(remote.mtt.length).toBe(SIZE / PAGE_SIZE - 2);
          // Every MTT entry is readable and writable, and for VRAM behind the switch it is the bus address.
          for (const e of remote.mtt) expect(e % 4).toBe(MLX5_IB_MTT_READ | MLX5_IB_MTT_WRITE);
          if (where === "vram-switch") {
            const list = rig.gpu.currentList(remoteBuf);
            expect(mttDma(remote.mtt[0] ?? 0)).toBe((list.phys[0] ?? 0) + 2 * PAGE_SIZE + (list.provider?.busOffset ?? 0));
          }

          // RDMA WRITE across a page boundary, 3 pages in.
          const data = pattern(1, 3 * PAGE_SIZE);
          cpuWrite(rig, localBuf, 0, data);
          const at = iova + 3 * PAGE_SIZE - 100;
          expect(rdmaWrite(rig.qpA, local, 0x1000_0000, remote, at, data.length).status).toBe(IbWcStatus.SUCCESS);
          expect(cpuRead(rig, remoteBuf, 2 * PAGE_SIZE + 3 * PAGE_SIZE - 100, data.length)).toEqual(data);

          // RDMA READ back into another place of the local buffer.
          expect(rdmaRead(rig.qpA, local, 0x1000_0000 + 8 * PAGE_SIZE, remote, at, data.length).status).toBe(IbWcStatus.SUCCESS);
          expect(cpuRead(rig, localBuf, 8 * PAGE_SIZE, data.length)).toEqual(data);

          // SEND into a posted RECV on the remote MR.
          const msg = pattern(2, 500);
          cpuWrite(rig, localBuf, 20 * PAGE_SIZE, msg);
          expect(ibPostRecv(rig.qpB, { wrId: 9, sgList: [{ addr: iova + 10 * PAGE_SIZE, length: 1000, lkey: remote.lkey }] })).toBe(0);
          expect(postAndPoll(rig.qpA, { wrId: 3, opcode: IbWrOpcode.SEND, sgList: [{ addr: 0x1000_0000 + 20 * PAGE_SIZE, length: msg.length, lkey: local.lkey }] }).status).toBe(IbWcStatus.SUCCESS);
          const [recv] = ibPollCq(rig.cqB, 1);
          expect(recv?.status).toBe(IbWcStatus.SUCCESS);
          expect(recv?.byteLen).toBe(msg.length);
          expect(cpuRead(rig, remoteBuf, 12 * PAGE_SIZE, msg.length)).toEqual(msg);

          // Atomics on an 8-byte word of the remote MR.
          const word = new Uint8Array(8);
          new DataView(word.buffer).setBigUint64(0, 40n, true);
          cpuWrite(rig, remoteBuf, 2 * PAGE_SIZE + 64, word);
          const fa = postAndPoll(rig.qpA, { wrId: 4, opcode: IbWrOpcode.ATOMIC_FETCH_AND_ADD, sgList: [{ addr: 0x1000_0000 + 30 * PAGE_SIZE, length: 8, lkey: local.lkey }], remoteAddr: iova + 64, rkey: remote.rkey, compareAdd: 2n });
          expect(fa.status).toBe(IbWcStatus.SUCCESS);
          expect(new DataView(cpuRead(rig, localBuf, 30 * PAGE_SIZE, 8).buffer).getBigUint64(0, true)).toBe(40n);
          const cs = postAndPoll(rig.qpA, { wrId: 5, opcode: IbWrOpcode.ATOMIC_CMP_AND_SWP, sgList: [{ addr: 0x1000_0000 + 30 * PAGE_SIZE, length: 8, lkey: local.lkey }], remoteAddr: iova + 64, rkey: remote.rkey, compareAdd: 42n, swap: 7n });
          expect(cs.status).toBe(IbWcStatus.SUCCESS);
          expect(new DataView(cpuRead(rig, remoteBuf, 2 * PAGE_SIZE + 64, 8).buffer).getBigUint64(0, true)).toBe(7n);

          // Outside the MR: a remote access error, nothing written.
          expect(rdmaWrite(rig.loopA, local, 0x1000_0000, local, 0x1000_0000 + SIZE - 8, 16).status).toBe(IbWcStatus.REM_ACCESS_ERR);

          expect(rig.nicB.deregMr(remote)).toBe(0);
          expect(rig.nicA.deregMr(local)).toBe(0);
          expect(rig.nicB.deregMr(remote)).toBe(-22);
          dmaBufPut(remoteBuf);
          dmaBufPut(localBuf);
          expect(leftovers(rig)).toEqual({ buffers: 0, attachments: 0, mappings: 0, mappedA: 0, mappedB: 0 });
          expect(rig.sys.debug.reports()).toEqual([]);
        });
      }
    }
  }
});

describe("a dynamic dmabuf MR follows its buffer", () => {
  function writeRead(rig: DmabufRig, local: IbMr, remote: IbMr, off: number, tag: number): void {
    const data = pattern(tag, 2 * PAGE_SIZE);
    const localBuf = local.dmabuf?.dmabuf;
    if (localBuf === undefined) throw new Error("not a dmabuf MR");
    cpuWrite(rig, localBuf, 0, data);
    expect(rdmaWrite(rig.qpA, local, local.addr, remote, remote.addr + off, data.length).status).toBe(IbWcStatus.SUCCESS);
  }

  for (const mapping of MAPPINGS) {
    it(`${mapping}: a migration zaps the MTT and unmaps; the next access faults, maps again and waits for the KERNEL fence`, () => {
      // A slow copy engine (0.1 byte/ns): the copy outlasts the invalidation's UMR.
      const rig = dmabufRig({ copyBytesPerNs: 0.1 });
      const buf = rig.farGpu.allocate(SIZE, "vram");
      const localBuf = rig.heap.allocate(SIZE);
      const remote = mustMr(rig.nicB.regDmabufMr(rig.pdB, buf, 0, SIZE, 0x4000_0000, ACCESS_ALL, { mapping }));
      const local = mustMr(rig.nicA.regDmabufMr(rig.pdA, localBuf, 0, SIZE, 0x1000_0000, ACCESS_ALL, { mapping }));
      writeRead(rig, local, remote, 5 * PAGE_SIZE, 1);
      const iovaBefore = remote.dmabuf?.physDma?.state?.addr;
      const c = rig.kernel.trace.counters;
      const before = c.snapshot();
      const faults = rig.nicB.stats.pageFaultEvents;

      expect(rig.farGpu.migrate(buf, "ram")).toBe(SIZE / rig.farGpu.blockBytes);
      // The invalidate callback ran under the lock: MTT zapped, the mapping gone (the IOVA kept for "phys").
      expect(remote.mtt.every((e) => e === 0)).toBe(true);
      expect(remote.dmabuf?.mapped).toBe(false);
      if (mapping === "phys") expect(remote.dmabuf?.keptIova).toBe(true);
      const fence = buf.resv.signaledAt(0);
      expect(fence).toBeGreaterThan(rig.kernel.trace.clock.now);

      // The bytes written before moved with the buffer; the next WRITE faults and lands in RAM.
      writeRead(rig, local, remote, 9 * PAGE_SIZE, 2);
      expect(rig.kernel.trace.clock.now).toBeGreaterThanOrEqual(fence);
      expect(rig.nicB.stats.pageFaultEvents).toBe(faults + 1);
      const d = c.snapshot().diff(before);
      expect(d.get(RdmaDmabufCounter.DmabufMrFaults)).toBe(1);
      expect(d.get(RdmaDmabufCounter.DmabufMrInvalidations)).toBe(1);
      expect(d.get(RdmaDmabufCounter.DmabufMrMttZapped)).toBe(SIZE / PAGE_SIZE);
      expect(d.get(DmaBufCounter.DmaBufFenceWaits)).toBe(1);
      expect(cpuRead(rig, buf, 5 * PAGE_SIZE, 2 * PAGE_SIZE)).toEqual(pattern(1, 2 * PAGE_SIZE));
      expect(cpuRead(rig, buf, 9 * PAGE_SIZE, 2 * PAGE_SIZE)).toEqual(pattern(2, 2 * PAGE_SIZE));
      if (mapping === "phys") expect(remote.dmabuf?.physDma?.state?.addr).toBe(iovaBefore);
      // The invalidation log saw the quiescence and the first DMA after it.
      const rec = rig.sys.invalidations.records.at(-1);
      expect(rec?.tQuiesced).toBeDefined();
      expect(rec?.tFirstDmaAfter).toBeDefined();

      rig.nicB.deregMr(remote);
      rig.nicA.deregMr(local);
      dmaBufPut(buf);
      dmaBufPut(localBuf);
      rig.farGpu.reap();
      expect(leftovers(rig)).toEqual({ buffers: 0, attachments: 0, mappings: 0, mappedA: 0, mappedB: 0 });
    });
  }

  it("a VFIO revoke makes faults fail (remote access error); after memory is enabled again a new QP's traffic maps again", () => {
    const rig = dmabufRig();
    const buf = vfioBuf(rig, 0, SIZE);
    const localBuf = rig.heap.allocate(SIZE);
    const remote = mustMr(rig.nicB.regDmabufMr(rig.pdB, buf, 0, SIZE, 0x4000_0000, ACCESS_ALL));
    const local = mustMr(rig.nicA.regDmabufMr(rig.pdA, localBuf, 0, SIZE, 0x1000_0000, ACCESS_ALL));
    writeRead(rig, local, remote, 0, 1);
    const bar = rig.platform.endpoint(rig.vfio.bdf).bars[0];
    expect(rig.kernel.memory.read(physAddr(bar?.phys ?? 0), 2 * PAGE_SIZE)).toEqual(pattern(1, 2 * PAGE_SIZE));
    expect(rig.vfio.setMemoryEnable(false).done).toBe(true);
    expect(remote.mtt.every((e) => e === 0)).toBe(true);
    expect(rdmaWrite(rig.qpA, local, local.addr, remote, remote.addr, 64).status).toBe(IbWcStatus.REM_ACCESS_ERR);
    expect(rig.nicB.stats.faultErrors).toBe(1);
    expect(rig.vfio.setMemoryEnable(true).done).toBe(true);
    // The old QP is in the error state: a fresh pair on the same NICs.
    const qa = ibCreateQp(rig.pdA, { sendCq: rig.cqA, recvCq: rig.cqA });
    const qb = ibCreateQp(rig.pdB, { sendCq: rig.cqB, recvCq: rig.cqB });
    ibConnectQp(qa, qb);
    ibPollCq(rig.cqA, 64);
    cpuWrite(rig, localBuf, 0, pattern(5, 64));
    expect(rdmaWrite(qa, local, local.addr, remote, remote.addr + 8 * PAGE_SIZE, 64).status).toBe(IbWcStatus.SUCCESS);
    expect(rig.kernel.memory.read(physAddr((bar?.phys ?? 0) + 8 * PAGE_SIZE), 64)).toEqual(pattern(5, 64));
    expect(remote.dmabuf?.maps).toBe(2);
    rig.nicB.deregMr(remote);
    rig.nicA.deregMr(local);
    dmaBufPut(buf);
    dmaBufPut(localBuf);
    expect(leftovers(rig)).toEqual({ buffers: 0, attachments: 0, mappings: 0, mappedA: 0, mappedB: 0 });
  });
});

describe("pinned and pinned-revocable dmabuf MRs", () => {
  it("pinned: the GPU refuses to migrate the buffer (-EBUSY) and the bytes stay; VFIO refuses the importer (-EOPNOTSUPP)", () => {
    const rig = dmabufRig();
    const buf = rig.gpu.allocate(SIZE, "vram");
    const mr = mustMr(rig.nicB.regDmabufMr(rig.pdB, buf, 0, SIZE, 0x4000_0000, ACCESS_ALL, { kind: "pinned" }));
    const mttBefore = Float64Array.from(mr.mtt);
    expect(rig.gpu.migrate(buf, "ram")).toBe(-16);
    expect(rig.gpu.placement(buf).every((v) => v)).toBe(true);
    expect(mr.mtt).toEqual(mttBefore);
    const vbuf = vfioBuf(rig, 0, SIZE);
    const attaches = rig.kernel.trace.counters.get(DmaBufCounter.DmaBufAttaches);
    expect(rig.nicB.regDmabufMr(rig.pdB, vbuf, 0, SIZE, 0x8000_0000, ACCESS_ALL, { kind: "pinned" })).toBe(-95);
    expect(rig.kernel.trace.counters.get(DmaBufCounter.DmaBufAttaches)).toBe(attaches);
    expect(vbuf.refs).toBe(1);
    rig.nicB.deregMr(mr);
    // Unpinned now: the buffer moves again.
    expect(rig.gpu.migrate(buf, "ram")).toBeGreaterThan(0);
    dmaBufPut(buf);
    dmaBufPut(vbuf);
    expect(leftovers(rig)).toEqual({ buffers: 0, attachments: 0, mappings: 0, mappedA: 0, mappedB: 0 });
  });

  for (const mapping of MAPPINGS) {
    it(`revocable (${mapping}): a VFIO revoke disables the mkey; later accesses complete with an access error and nothing maps again`, () => {
      const rig = dmabufRig();
      const buf = vfioBuf(rig, 64 * 1024, SIZE);
      const localBuf = rig.heap.allocate(SIZE);
      const remote = mustMr(rig.nicB.regDmabufMr(rig.pdB, buf, 0, SIZE, 0x4000_0000, ACCESS_ALL, { kind: "revocable", mapping }));
      const local = mustMr(rig.nicA.regDmabufMr(rig.pdA, localBuf, 0, SIZE, 0x1000_0000, ACCESS_ALL, { kind: "pinned", mapping }));
      cpuWrite(rig, localBuf, 0, pattern(3, 4096));
      expect(rdmaWrite(rig.qpA, local, local.addr, remote, remote.addr + 4096, 4096).status).toBe(IbWcStatus.SUCCESS);
      const bar = rig.platform.endpoint(rig.vfio.bdf).bars[0];
      expect(rig.kernel.memory.read(physAddr((bar?.phys ?? 0) + 64 * 1024 + 4096), 4096)).toEqual(pattern(3, 4096));

      const r = rig.vfio.setMemoryEnable(false);
      expect(r.done).toBe(true);
      expect(remote.enabled).toBe(false);
      expect(remote.dmabuf?.revoked).toBe(true);
      expect(remote.dmabuf?.mapped).toBe(false);
      expect(remote.mtt.every((e) => e === 0)).toBe(true);
      expect(rig.kernel.trace.counters.get(RdmaDmabufCounter.DmabufMrRevokes)).toBe(1);
      expect(rdmaWrite(rig.qpA, local, local.addr, remote, remote.addr, 64).status).toBe(IbWcStatus.REM_ACCESS_ERR);
      // Memory enabled again: a revoke is for good, the MR stays dead.
      rig.vfio.setMemoryEnable(true);
      expect(ibPostSend(rig.loopA, { wrId: 1, opcode: IbWrOpcode.RDMA_WRITE, sgList: [{ addr: local.addr, length: 8, lkey: local.lkey }], remoteAddr: local.addr + 8192, rkey: local.rkey })).toBe(0);
      expect(ibPollCq(rig.cqA, 8).at(-1)?.status).toBe(IbWcStatus.SUCCESS);
      expect(remote.dmabuf?.mapped).toBe(false);
      expect(rig.nicB.deregMr(remote)).toBe(0);
      expect(rig.nicA.deregMr(local)).toBe(0);
      dmaBufPut(buf);
      dmaBufPut(localBuf);
      expect(leftovers(rig)).toEqual({ buffers: 0, attachments: 0, mappings: 0, mappedA: 0, mappedB: 0 });
    });
  }
});

describe("6.19 dma-buf semantics (CONFIG_DMABUF_MOVE_NOTIFY off, VFIO without pin)", () => {
  it("a dynamic MR is pinned at map time: the GPU cannot move its buffer, the bytes still flow; VFIO refuses every MR that maps", () => {
    const rig = dmabufRig({ version: "6.19" });
    const buf = rig.gpu.allocate(SIZE, "vram");
    const localBuf = rig.heap.allocate(SIZE);
    const remote = mustMr(rig.nicB.regDmabufMr(rig.pdB, buf, 0, SIZE, 0x4000_0000, ACCESS_ALL));
    const local = mustMr(rig.nicA.regDmabufMr(rig.pdA, localBuf, 0, SIZE, 0x1000_0000, ACCESS_ALL, { kind: "pinned" }));
    expect(rig.gpu.migrate(buf, "ram")).toBe(-16);
    cpuWrite(rig, localBuf, 0, pattern(9, 128));
    expect(rdmaWrite(rig.qpA, local, local.addr, remote, remote.addr + 5000, 128).status).toBe(IbWcStatus.SUCCESS);
    expect(cpuRead(rig, buf, 5000, 128)).toEqual(pattern(9, 128));
    const v = vfioBuf(rig, 0, SIZE);
    for (const kind of KINDS) expect(rig.nicB.regDmabufMr(rig.pdB, v, 0, SIZE, 0, ACCESS_ALL, { kind })).toBe(-95);
    expect(v.refs).toBe(1);
    expect(rig.nicB.deregMr(remote)).toBe(0);
    expect(rig.nicA.deregMr(local)).toBe(0);
    for (const b of [buf, localBuf, v]) dmaBufPut(b);
    expect(leftovers(rig)).toEqual({ buffers: 0, attachments: 0, mappings: 0, mappedA: 0, mappedB: 0 });
  });
});

describe("dmabuf MRs beside user-memory MRs", () => {
  it("one SEND gathers from a dmabuf MR and a pinned process MR, and scatters into a dynamic dmabuf MR and an ODP MR", () => {
    const rig = dmabufRig();
    const sys = new MmSystem(rig.kernel);
    const mm = new Mm(sys);
    const va = mm.mmap(4 * PAGE_SIZE);
    const odpVa = mm.mmap(4 * PAGE_SIZE);
    const gbuf = rig.gpu.allocate(SIZE, "vram");
    const hbuf = rig.heap.allocate(SIZE);
    const userMr = rig.nicA.regMr(rig.pdA, mm, va, 4 * PAGE_SIZE, ACCESS_ALL);
    const odpMr = rig.nicB.regMr(rig.pdB, mm, odpVa, 4 * PAGE_SIZE, ACCESS_ALL | IB_ACCESS_ON_DEMAND);
    if (typeof userMr === "number" || typeof odpMr === "number") throw new Error("ibv_reg_mr failed");
    const heapMr = mustMr(rig.nicA.regDmabufMr(rig.pdA, hbuf, 0, SIZE, 0x9000_0000, ACCESS_ALL, { kind: "pinned", mapping: "phys" }));
    const gpuMr = mustMr(rig.nicB.regDmabufMr(rig.pdB, gbuf, 0, SIZE, 0xa000_0000, ACCESS_ALL));
    const a = pattern(11, 3000);
    const b = pattern(12, 5000);
    cpuWrite(rig, hbuf, 100, a);
    mm.write(va + 50, b);
    expect(
      ibPostRecv(rig.qpB, {
        wrId: 7,
        sgList: [
          { addr: 0xa000_0000 + 2 * PAGE_SIZE, length: 4000, lkey: gpuMr.lkey },
          { addr: odpVa + 10, length: 4000, lkey: odpMr.lkey },
        ],
      }),
    ).toBe(0);
    const wc = postAndPoll(rig.qpA, {
      wrId: 8,
      opcode: IbWrOpcode.SEND,
      sgList: [
        { addr: 0x9000_0000 + 100, length: a.length, lkey: heapMr.lkey },
        { addr: va + 50, length: b.length, lkey: userMr.lkey },
      ],
    });
    expect(wc.status).toBe(IbWcStatus.SUCCESS);
    const sent = new Uint8Array(8000);
    sent.set(a, 0);
    sent.set(b, a.length);
    expect(cpuRead(rig, gbuf, 2 * PAGE_SIZE, 4000)).toEqual(sent.subarray(0, 4000));
    expect(mm.read(odpVa + 10, 4000)).toEqual(sent.subarray(4000));
    for (const [nic, mr] of [[rig.nicA, userMr], [rig.nicB, odpMr], [rig.nicA, heapMr], [rig.nicB, gpuMr]] as const) expect(nic.deregMr(mr)).toBe(0);
    mm.exit();
    dmaBufPut(gbuf);
    dmaBufPut(hbuf);
    expect(sys.pagesInUse).toBe(0);
    expect(leftovers(rig)).toEqual({ buffers: 0, attachments: 0, mappings: 0, mappedA: 0, mappedB: 0 });
  });
});
