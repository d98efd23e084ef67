import { PAGE_SIZE } from "@dmasim/memory";
import { describe, expect, it } from "vitest";
import { IB_ACCESS_LOCAL_WRITE, IB_ACCESS_ON_DEMAND, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE, IbWcStatus, IbWrOpcode, RdmaErrno } from "./constants.js";
import type { IbMr } from "./mr.js";
import { kLookupMkey } from "./internal.js";
import { NicAccess } from "./nic.js";
import { postAndPoll, rdmaRig } from "./test-fixtures.js";

// The NIC finds an mkey by key >>> 8 in an array: only the exact key of a live MR may match. Keys that
// share the index (other low bits, or the same low 32 bits of a larger integer) and the key of a
// deregistered MR are refused as unknown keys.

const RW = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ;

describe("mkey lookup", () => {
  it("accepts only the exact key of a live MR", () => {
    const rig = rdmaRig();
    const { nicA, nicB, pdA, pdB, qpA, mm } = rig;
    const la = mm.mmap(PAGE_SIZE);
    const ra = mm.mmap(4 * PAGE_SIZE);
    const local = nicA.regMr(pdA, mm, la, PAGE_SIZE, RW) as IbMr;
    const remote = nicB.regMr(pdB, mm, ra, 4 * PAGE_SIZE, RW | IB_ACCESS_ON_DEMAND) as IbMr;
    expect(nicB[kLookupMkey](remote.rkey)).toBe(remote);
    expect(nicB.checkMkey(remote.rkey, pdB, ra, 64, NicAccess.REMOTE_WRITE)).toBe(remote);
    const write = (rkey: number, wrId: number): IbWcStatus =>
      postAndPoll(qpA, { wrId, opcode: IbWrOpcode.RDMA_WRITE, sgList: [{ addr: la, length: 64, lkey: local.lkey }], remoteAddr: ra, rkey }).status;
    for (const alias of [remote.rkey ^ 1, remote.rkey + 2 ** 32, remote.rkey - 2 ** 32, remote.rkey + 0x100 * 1000]) {
      expect(nicB[kLookupMkey](alias)).toBeUndefined();
      expect(nicB.checkMkey(alias, pdB, ra, 64, NicAccess.REMOTE_WRITE)).toBeUndefined();
    }
    expect(write(remote.rkey ^ 1, 1)).toBe(IbWcStatus.REM_ACCESS_ERR);
    // The QP is in the error state after a failed WR: a fresh rig checks the live key and deregistration.
    const rig2 = rdmaRig();
    const l2 = rig2.nicA.regMr(rig2.pdA, rig2.mm, rig2.mm.mmap(PAGE_SIZE), PAGE_SIZE, RW) as IbMr;
    const a2 = rig2.mm.mmap(PAGE_SIZE);
    const r2 = rig2.nicB.regMr(rig2.pdB, rig2.mm, a2, PAGE_SIZE, RW | IB_ACCESS_ON_DEMAND) as IbMr;
    const wr = { wrId: 7, opcode: IbWrOpcode.RDMA_WRITE, sgList: [{ addr: l2.addr, length: 64, lkey: l2.lkey }], remoteAddr: a2, rkey: r2.rkey };
    expect(postAndPoll(rig2.qpA, wr).status).toBe(IbWcStatus.SUCCESS);
    expect(rig2.nicB.deregMr(r2)).toBe(0);
    expect(rig2.nicB[kLookupMkey](r2.rkey)).toBeUndefined();
    expect(rig2.nicB.deregMr(r2)).toBe(-RdmaErrno.EINVAL);
    expect(postAndPoll(rig2.qpA, { ...wr, wrId: 8 }).status).toBe(IbWcStatus.REM_ACCESS_ERR);
    // A later registration gets a new key; the old one stays unknown.
    const r3 = rig2.nicB.regMr(rig2.pdB, rig2.mm, a2, PAGE_SIZE, RW) as IbMr;
    expect(r3.rkey).not.toBe(r2.rkey);
    expect(rig2.nicB[kLookupMkey](r3.rkey)).toBe(r3);
    expect(rig2.nicB[kLookupMkey](r2.rkey)).toBeUndefined();
    expect(rig2.nicB.mrs).toContain(r3);
    expect(rig2.nicB.mrs).not.toContain(r2);
  });
});
