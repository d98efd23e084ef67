import { unsafeIova } from "@dmasim/iommu";
import { describe, expect, it } from "vitest";
import { PAGE_SIZE } from "@dmasim/memory";
import { Counter as DmaCounter } from "@dmasim/dma";
import {
  IB_ACCESS_LOCAL_WRITE,
  IB_ACCESS_REMOTE_ATOMIC,
  IB_ACCESS_REMOTE_READ,
  IB_ACCESS_REMOTE_WRITE,
  IbWcOpcode,
  IbWcStatus,
  IbWrOpcode,
} from "./constants.js";
import { RdmaCounter } from "./counters.js";
import type { IbMr } from "./mr.js";
import { IbQpState, ibPollCq, ibPostRecv, ibPostSend } from "./verbs.js";
import { OK, pattern, postAndPoll, rdmaRead, rdmaRig, rdmaWrite } from "./test-fixtures.js";

const ALL = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ | IB_ACCESS_REMOTE_ATOMIC;

function mr(x: IbMr | number): IbMr {
  if (typeof x === "number") throw new Error(`registration failed: ${x}`);
  return x;
}

describe("pinned MRs: verbs traffic between two NICs and in loopback", () => {
  it("RDMA WRITE and READ move exactly the bytes, through each NIC's IOMMU", () => {
    const { mm, nicA, nicB, pdA, pdB, qpA, platform } = rdmaRig();
    const src = mm.mmap(4 * PAGE_SIZE);
    const dst = mm.mmap(4 * PAGE_SIZE);
    const data = pattern(7, 3 * PAGE_SIZE);
    mm.write(src + 100, data);
    const a = mr(nicA.regMr(pdA, mm, src, 4 * PAGE_SIZE, ALL));
    const b = mr(nicB.regMr(pdB, mm, dst, 4 * PAGE_SIZE, ALL));
    const tlpsBefore = platform.trace.counters.get(DmaCounter.TlpsToMemory);
    expect(rdmaWrite(qpA, a, src + 100, b, dst + 50, data.length).status).toBe(OK);
    expect(mm.read(dst + 50, data.length)).toEqual(data);
    expect(mm.read(dst, 50)).toEqual(new Uint8Array(50));
    // Every byte crossed the fabric as TLPs: read by A, written by B.
    expect(platform.trace.counters.get(DmaCounter.TlpsToMemory) - tlpsBefore).toBeGreaterThanOrEqual(8);
    // The MTT holds IOVAs: what A's domain translates them to is the pinned page.
    const e = a.mtt[0] ?? 0;
    expect(nicA.dev.domain?.iovaToPhys(unsafeIova(e - (e % 4)))).toBe((mm.pteAt(src)?.pfn ?? 0) * PAGE_SIZE);
    mm.write(dst + 2 * PAGE_SIZE, pattern(9, 64));
    const wc = rdmaRead(qpA, a, src, b, dst + 2 * PAGE_SIZE, 64);
    expect(wc).toMatchObject({ status: OK, opcode: IbWcOpcode.RDMA_READ, byteLen: 64 });
    expect(mm.read(src, 64)).toEqual(pattern(9, 64));
  });

  it("SEND lands in the posted RECV buffer; without a RECV the sender gets RNR_RETRY_EXC_ERR", () => {
    const { mm, nicA, nicB, pdA, pdB, qpA, qpB, cqB } = rdmaRig();
    const src = mm.mmap(PAGE_SIZE);
    const dst = mm.mmap(2 * PAGE_SIZE);
    mm.write(src, pattern(1, 300));
    const a = mr(nicA.regMr(pdA, mm, src, PAGE_SIZE, ALL));
    const b = mr(nicB.regMr(pdB, mm, dst, 2 * PAGE_SIZE, IB_ACCESS_LOCAL_WRITE));
    expect(ibPostRecv(qpB, { wrId: 77, sgList: [{ addr: dst + PAGE_SIZE - 100, length: 1000, lkey: b.lkey }] })).toBe(0);
    expect(postAndPoll(qpA, { wrId: 5, opcode: IbWrOpcode.SEND, sgList: [{ addr: src, length: 300, lkey: a.lkey }] })).toMatchObject({ status: OK, opcode: IbWcOpcode.SEND });
    expect(ibPollCq(cqB, 4)).toEqual([{ wrId: 77, status: OK, opcode: IbWcOpcode.RECV, byteLen: 300, qpNum: qpB.qpNum }]);
    expect(mm.read(dst + PAGE_SIZE - 100, 300)).toEqual(pattern(1, 300));
    expect(postAndPoll(qpA, { wrId: 6, opcode: IbWrOpcode.SEND, sgList: [{ addr: src, length: 8, lkey: a.lkey }] }).status).toBe(IbWcStatus.RNR_RETRY_EXC_ERR);
    // The QP is in error now: the next WR is flushed.
    expect(qpA.state).toBe(IbQpState.ERR);
    expect(postAndPoll(qpA, { wrId: 8, opcode: IbWrOpcode.SEND, sgList: [{ addr: src, length: 8, lkey: a.lkey }] }).status).toBe(IbWcStatus.WR_FLUSH_ERR);
  });

  it("a SEND longer than the RECV: LOC_LEN_ERR at the responder, REM_INV_REQ_ERR at the requester", () => {
    const { mm, nicA, nicB, pdA, pdB, qpA, qpB, cqB } = rdmaRig();
    const src = mm.mmap(PAGE_SIZE);
    const dst = mm.mmap(PAGE_SIZE);
    const a = mr(nicA.regMr(pdA, mm, src, PAGE_SIZE, ALL));
    const b = mr(nicB.regMr(pdB, mm, dst, PAGE_SIZE, IB_ACCESS_LOCAL_WRITE));
    ibPostRecv(qpB, { wrId: 1, sgList: [{ addr: dst, length: 16, lkey: b.lkey }] });
    expect(postAndPoll(qpA, { wrId: 2, opcode: IbWrOpcode.SEND, sgList: [{ addr: src, length: 17, lkey: a.lkey }] }).status).toBe(IbWcStatus.REM_INV_REQ_ERR);
    expect(ibPollCq(cqB, 1)[0]?.status).toBe(IbWcStatus.LOC_LEN_ERR);
  });

  it("8-byte atomics: fetch-and-add and compare-and-swap return the old value and update the remote word", () => {
    const { mm, nicA, pdA, loopA } = rdmaRig();
    const buf = mm.mmap(2 * PAGE_SIZE);
    const a = mr(nicA.regMr(pdA, mm, buf, 2 * PAGE_SIZE, ALL));
    const word = buf + PAGE_SIZE + 8;
    const init = new Uint8Array(8);
    new DataView(init.buffer).setBigUint64(0, 0xffff_ffff_ffff_fff0n, true);
    mm.write(word, init);
    const sg = [{ addr: buf, length: 8, lkey: a.lkey }];
    expect(postAndPoll(loopA, { wrId: 1, opcode: IbWrOpcode.ATOMIC_FETCH_AND_ADD, sgList: sg, remoteAddr: word, rkey: a.rkey, compareAdd: 0x20n }).status).toBe(OK);
    const u64 = (addr: number): bigint => new DataView(mm.read(addr, 8).buffer).getBigUint64(0, true);
    expect(u64(buf)).toBe(0xffff_ffff_ffff_fff0n);
    expect(u64(word)).toBe(0x10n); // wrapped at 2^64
    expect(postAndPoll(loopA, { wrId: 2, opcode: IbWrOpcode.ATOMIC_CMP_AND_SWP, sgList: sg, remoteAddr: word, rkey: a.rkey, compareAdd: 0x11n, swap: 5n }).status).toBe(OK);
    expect(u64(word)).toBe(0x10n); // no match
    expect(postAndPoll(loopA, { wrId: 3, opcode: IbWrOpcode.ATOMIC_CMP_AND_SWP, sgList: sg, remoteAddr: word, rkey: a.rkey, compareAdd: 0x10n, swap: 5n }).status).toBe(OK);
    expect(u64(word)).toBe(5n);
    expect(u64(buf)).toBe(0x10n);
    // A misaligned atomic is an invalid request at the responder.
    expect(postAndPoll(loopA, { wrId: 4, opcode: IbWrOpcode.ATOMIC_FETCH_AND_ADD, sgList: sg, remoteAddr: word + 4, rkey: a.rkey, compareAdd: 1n }).status).toBe(IbWcStatus.REM_INV_REQ_ERR);
  });

  it("remote access errors: a bad rkey, a missing access right, an address past the MR", () => {
    const { mm, nicA, nicB, pdA, pdB, qpA, kernel } = rdmaRig();
    const src = mm.mmap(PAGE_SIZE);
    const dst = mm.mmap(2 * PAGE_SIZE);
    mm.write(dst, pattern(3, 2 * PAGE_SIZE));
    const a = mr(nicA.regMr(pdA, mm, src, PAGE_SIZE, ALL));
    const ro = mr(nicB.regMr(pdB, mm, dst, PAGE_SIZE, IB_ACCESS_REMOTE_READ));
    const errors0 = kernel.trace.counters.get(RdmaCounter.RdmaCqeErrors);
    const cases: [number, number, number][] = [
      [ro.rkey + 0x100, dst, 8],
      [ro.rkey, dst, 8], // a WRITE to a read-only MR
      [ro.rkey, dst + PAGE_SIZE - 4, 8], // crosses the MR's end
    ];
    for (const [rkey, addr, len] of cases) {
      qpA.state = IbQpState.RTS;
      expect(postAndPoll(qpA, { wrId: 9, opcode: IbWrOpcode.RDMA_WRITE, sgList: [{ addr: src, length: len, lkey: a.lkey }], remoteAddr: addr, rkey }).status).toBe(IbWcStatus.REM_ACCESS_ERR);
    }
    expect(mm.read(dst, 2 * PAGE_SIZE)).toEqual(pattern(3, 2 * PAGE_SIZE));
    expect(kernel.trace.counters.get(RdmaCounter.RdmaCqeErrors) - errors0).toBe(3);
    qpA.state = IbQpState.RTS;
    // A local SGE with a bad lkey is a local protection error.
    expect(postAndPoll(qpA, { wrId: 10, opcode: IbWrOpcode.RDMA_READ, sgList: [{ addr: src, length: 8, lkey: 1 }], remoteAddr: dst, rkey: ro.rkey }).status).toBe(IbWcStatus.LOC_PROT_ERR);
  });

  it("a pinned MR keeps its pages: after munmap the NIC still reaches the old page, the process does not", () => {
    const { mm, sys, nicA, pdA, loopA } = rdmaRig();
    const buf = mm.mmap(2 * PAGE_SIZE);
    mm.write(buf, pattern(4, 64));
    const a = mr(nicA.regMr(pdA, mm, buf, 2 * PAGE_SIZE, ALL));
    const pinnedPfn = mm.pteAt(buf)?.pfn ?? 0;
    expect(sys.refCount(pinnedPfn)).toBe(2);
    mm.munmap(buf, 2 * PAGE_SIZE);
    expect(sys.refCount(pinnedPfn)).toBe(1);
    const wc = postAndPoll(loopA, { wrId: 1, opcode: IbWrOpcode.RDMA_READ, sgList: [{ addr: buf + PAGE_SIZE, length: 64, lkey: a.lkey }], remoteAddr: buf, rkey: a.rkey });
    expect(wc.status).toBe(OK);
    expect(nicA.deregMr(a)).toBe(0);
    expect(sys.pagesInUse).toBe(0);
    expect(nicA.dev.domain?.iovaToPhys(unsafeIova((a.mtt[0] ?? 0) - ((a.mtt[0] ?? 0) % 4)))).toBeUndefined();
  });

  it("post_send returns -EINVAL for an atomic whose SGE is not 8 bytes, and completes nothing", () => {
    const { mm, nicA, pdA, loopA, cqA } = rdmaRig();
    const buf = mm.mmap(PAGE_SIZE);
    const a = mr(nicA.regMr(pdA, mm, buf, PAGE_SIZE, ALL));
    expect(ibPostSend(loopA, { wrId: 1, opcode: IbWrOpcode.ATOMIC_FETCH_AND_ADD, sgList: [{ addr: buf, length: 16, lkey: a.lkey }], remoteAddr: buf, rkey: a.rkey, compareAdd: 1n })).toBe(-22);
    expect(ibPollCq(cqA, 1)).toEqual([]);
  });
});

describe("ib_poll_cq", () => {
  it("returns completions oldest first, at most `n` per call, each once", () => {
    const { mm, nicA, pdA, loopA, cqA } = rdmaRig();
    const buf = mm.mmap(PAGE_SIZE);
    const a = mr(nicA.regMr(pdA, mm, buf, PAGE_SIZE, ALL));
    const post = (wrId: number) => ibPostSend(loopA, { wrId, opcode: IbWrOpcode.RDMA_WRITE, sgList: [{ addr: buf, length: 8, lkey: a.lkey }], remoteAddr: buf + 64, rkey: a.rkey });
    post(1);
    expect(ibPollCq(cqA, 4).map((wc) => wc.wrId)).toEqual([1]);
    expect(ibPollCq(cqA, 4)).toEqual([]);
    post(2);
    post(3);
    post(4);
    expect(ibPollCq(cqA, 1).map((wc) => wc.wrId)).toEqual([2]);
    expect(ibPollCq(cqA, 5).map((wc) => [wc.wrId, wc.status])).toEqual([[3, OK], [4, OK]]);
    post(5);
    expect(ibPollCq(cqA, 1).map((wc) => wc.wrId)).toEqual([5]);
    expect(ibPollCq(cqA, 1)).toEqual([]);
  });
});
