import { describe, expect, it } from "vitest";
import { PAGE_SIZE } from "@dmasim/memory";
import {
  IB_ACCESS_HUGETLB,
  IB_ACCESS_LOCAL_WRITE,
  IB_ACCESS_ON_DEMAND,
  IB_ACCESS_REMOTE_READ,
  IB_ACCESS_REMOTE_WRITE,
  IbWrOpcode,
  RdmaErrno,
} from "./constants.js";
import { RdmaInputError } from "./errors.js";
import { mlx5IbInitOdpMr, pagefaultMr } from "./odp.js";
import { ibUmemOdpGet } from "./umem-odp.js";
import type { IbMr } from "./mr.js";
import { ibCreateCq, ibCreateQp, ibPostRecv, ibPostSend } from "./verbs.js";
import { pattern, rdmaRig } from "./test-fixtures.js";

const RW = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ;

/** What a refusal must leave as it was: the counters, the pages the mm holds, the NIC's MRs, the IOVAs. */
function fingerprint(rig: ReturnType<typeof rdmaRig>): unknown {
  return {
    counters: rig.kernel.trace.counters.snapshot().nonZero(),
    pages: rig.sys.pagesInUse,
    mrsA: rig.nicA.mrs.length,
    mrsB: rig.nicB.mrs.length,
  };
}

describe("bad input: typed errors, kernel-style returns, the model unchanged", () => {
  it("ib_reg_user_mr: unknown access bits, bad ranges and a foreign PD throw RdmaInputError (EINVAL) and change nothing", () => {
    const rig = rdmaRig();
    const { mm, nicA, nicB, pdA, pdB } = rig;
    const a = mm.mmap(4 * PAGE_SIZE);
    mm.write(a, pattern(1));
    const before = fingerprint(rig);
    const bad: [number, number, number, unknown][] = [
      [a, PAGE_SIZE, RW | (1 << 12), pdA], // an unknown access bit
      [a, 0, RW, pdA], // empty
      [a, -PAGE_SIZE, RW, pdA],
      [-1, PAGE_SIZE, RW, pdA],
      [a + 0.5, PAGE_SIZE, RW, pdA],
      [2 ** 47 - PAGE_SIZE, 2 * PAGE_SIZE, RW | IB_ACCESS_ON_DEMAND, pdA], // past TASK_SIZE
      [Number.MAX_SAFE_INTEGER - 10, 100, RW, pdA], // overflows
      [a + PAGE_SIZE, 2 * 1024 * 1024, RW | IB_ACCESS_ON_DEMAND | IB_ACCESS_HUGETLB, pdA], // hugetlb, unaligned
      [a, PAGE_SIZE, RW, pdB], // the other NIC's PD
    ];
    for (const [addr, len, access, pd] of bad) {
      let err: unknown;
      try {
        nicA.regMr(pd as typeof pdA, mm, addr, len, access);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(RdmaInputError);
      expect((err as RdmaInputError).code).toBe("EINVAL");
    }
    expect(() => nicB.regMr(pdB, mm, a, PAGE_SIZE, 1 << 30)).toThrow(RdmaInputError);
    expect(fingerprint(rig)).toEqual(before);
  });

  it("kernel-style returns: -EINVAL for REMOTE_WRITE without LOCAL_WRITE, HUGETLB without ODP, an exited process; -EFAULT for an unpinnable page", () => {
    const rig = rdmaRig();
    const { mm, sys, nicA, pdA, gpuSwitch } = rig;
    const a = mm.mmap(4 * PAGE_SIZE);
    mm.write(a, pattern(1));
    // A peer BAR mapping in the middle: pin_user_pages cannot pin its pages for a plain MR.
    mm.mmap(PAGE_SIZE, { addr: a + 2 * PAGE_SIZE, p2p: gpuSwitch, shared: true });
    const before = fingerprint(rig);
    expect(nicA.regMr(pdA, mm, a, PAGE_SIZE, IB_ACCESS_REMOTE_WRITE)).toBe(-RdmaErrno.EINVAL);
    expect(nicA.regMr(pdA, mm, a, 2 * 1024 * 1024, RW | IB_ACCESS_HUGETLB)).toBe(-RdmaErrno.EINVAL);
    const pages = sys.pagesInUse;
    expect(nicA.regMr(pdA, mm, a, 4 * PAGE_SIZE, RW)).toBe(-RdmaErrno.EFAULT);
    // The two pages pinned before the BAR page were unpinned again (faulted-in pages stay with the mm).
    expect(sys.refCount(mm.pteAt(a)?.pfn ?? 0)).toBe(1);
    expect(sys.pagesInUse).toBeGreaterThanOrEqual(pages);
    const after = fingerprint(rig) as { counters: Record<string, number>; mrsA: number };
    expect(after.mrsA).toBe((before as { mrsA: number }).mrsA);
    // No IOVA was reserved and nothing was linked for the refused MR.
    expect(after.counters.DmaIovaTryAllocs).toBe((before as { counters: Record<string, number> }).counters.DmaIovaTryAllocs);
    expect(after.counters.PinnedPages).toBeUndefined();
    const other = mm.fork();
    other.exit();
    expect(nicA.regMr(pdA, other, a, PAGE_SIZE, RW | IB_ACCESS_ON_DEMAND)).toBe(-RdmaErrno.EINVAL);
  });

  it("dereg of a deregistered MR is -EINVAL; a non-MR throws", () => {
    const { mm, nicA, pdA } = rdmaRig();
    const m = nicA.regMr(pdA, mm, mm.mmap(PAGE_SIZE), PAGE_SIZE, RW | IB_ACCESS_ON_DEMAND) as IbMr;
    expect(nicA.deregMr(m)).toBe(0);
    expect(nicA.deregMr(m)).toBe(-RdmaErrno.EINVAL);
    expect(() => nicA.deregMr({} as unknown as IbMr)).toThrow(RdmaInputError);
  });

  it("post_send / post_recv: unknown opcodes, malformed SGEs, RDMA without a remote address throw; an unconnected QP is -EINVAL", () => {
    const rig = rdmaRig();
    const { mm, nicA, pdA, loopA } = rig;
    const a = mm.mmap(PAGE_SIZE);
    const m = nicA.regMr(pdA, mm, a, PAGE_SIZE, RW) as IbMr;
    const before = fingerprint(rig);
    const sg = [{ addr: a, length: 8, lkey: m.lkey }];
    expect(() => ibPostSend(loopA, { wrId: 1, opcode: 3 as IbWrOpcode, sgList: sg })).toThrow(RdmaInputError);
    expect(() => ibPostSend(loopA, { wrId: 1, opcode: IbWrOpcode.SEND, sgList: [{ addr: a, length: -1, lkey: m.lkey }] })).toThrow(RdmaInputError);
    expect(() => ibPostSend(loopA, { wrId: 1, opcode: IbWrOpcode.SEND, sgList: [{ addr: Number.MAX_SAFE_INTEGER, length: 8, lkey: m.lkey }] })).toThrow(RdmaInputError);
    expect(() => ibPostSend(loopA, { wrId: 1, opcode: IbWrOpcode.RDMA_WRITE, sgList: sg })).toThrow(RdmaInputError);
    expect(() => ibPostSend(loopA, { wrId: 1, opcode: IbWrOpcode.ATOMIC_CMP_AND_SWP, sgList: sg, remoteAddr: a, rkey: m.rkey, compareAdd: 1n })).toThrow(RdmaInputError);
    expect(() => ibPostRecv(loopA, { wrId: 1, sgList: "x" as unknown as typeof sg })).toThrow(RdmaInputError);
    expect(() => ibCreateCq(nicA, 0)).toThrow(RdmaInputError);
    const cq = ibCreateCq(nicA, 4);
    const lone = ibCreateQp(pdA, { sendCq: cq, recvCq: cq });
    expect(ibPostSend(lone, { wrId: 1, opcode: IbWrOpcode.SEND, sgList: sg })).toBe(-RdmaErrno.EINVAL);
    expect(ibPostRecv(lone, { wrId: 1, sgList: sg })).toBe(-RdmaErrno.EINVAL);
    expect(fingerprint(rig)).toEqual(before);
  });

  it("advise_mr: a malformed SGE throws before anything runs", () => {
    const { mm, nicA, pdA } = rdmaRig();
    const a = mm.mmap(PAGE_SIZE);
    const m = nicA.regMr(pdA, mm, a, PAGE_SIZE, RW | IB_ACCESS_ON_DEMAND) as IbMr;
    expect(() => nicA.adviseMr(pdA, 0, 1, [{ addr: a, length: 0, lkey: m.lkey }])).toThrow(RdmaInputError);
    expect(Array.from(m.mtt)).toEqual([0]);
  });

  it("driver entry points return the kernel's errnos: pagefault_mr outside the MR -EFAULT, ib_umem_odp_get without ON_DEMAND -EINVAL (and a WARN)", () => {
    const { mm, kernel, nicA, pdA } = rdmaRig({ debug: "collect" });
    const a = mm.mmap(4 * PAGE_SIZE);
    const m = nicA.regMr(pdA, mm, a, 4 * PAGE_SIZE, RW | IB_ACCESS_ON_DEMAND) as IbMr;
    expect(pagefaultMr(nicA, m, a - PAGE_SIZE, 8, 0)).toBe(-RdmaErrno.EFAULT);
    expect(pagefaultMr(nicA, m, a + 3 * PAGE_SIZE, PAGE_SIZE + 1, 0)).toBe(-RdmaErrno.EFAULT);
    expect(Array.from(m.mtt)).toEqual([0, 0, 0, 0]);
    const ops = { invalidate: () => true };
    expect(ibUmemOdpGet(nicA.dev, mm, a, PAGE_SIZE, RW, ops)).toBe(-RdmaErrno.EINVAL);
    expect(kernel.debug.reports().some((r) => r.check === "api-warn")).toBe(true);
    const pinned = nicA.regMr(pdA, mm, a, PAGE_SIZE, RW) as IbMr;
    expect(mlx5IbInitOdpMr(nicA, pinned)).toBe(-RdmaErrno.EINVAL);
  });
});
