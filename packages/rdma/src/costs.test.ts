import { describe, expect, it } from "vitest";
import { PAGE_SIZE } from "@dmasim/memory";
import { Counter as DmaCounter } from "@dmasim/dma";
import { COUNTER_CAPACITY, counterNamesOf } from "@dmasim/trace";
import { IB_ACCESS_LOCAL_WRITE, IB_ACCESS_ON_DEMAND, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE } from "./constants.js";
import { DEFAULT_RDMA_COSTS } from "./costs.js";
import type { RdmaCosts } from "./costs.js";
import { RdmaCounter } from "./counters.js";
import type { IbMr } from "./mr.js";
import { Mlx5Nic } from "./nic.js";
import { ibConnectQp, ibCreateCq, ibCreateQp } from "./verbs.js";
import { NIC_B, OK, rdmaRig, rdmaWrite } from "./test-fixtures.js";

const RW = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ;
const ZERO: RdmaCosts = { faultEventNs: 0, faultWorkDispatchNs: 0, umrPostNs: 0, umrPerEntryNs: 0, umrCompletionNs: 0, faultResumeNs: 0, faultAttemptNs: 0, migrationWaitNs: 0, wireNsPerByte: 0 };

describe("cost rows of the NIC fault path and the counter block", () => {
  it("the default rows add up to Part E.2's 50 µs odp_fault_fixed", () => {
    const c = DEFAULT_RDMA_COSTS;
    expect(c.faultEventNs + c.faultWorkDispatchNs + c.umrPostNs + c.umrCompletionNs + c.faultResumeNs).toBe(50_000);
  });

  it("every row is overridable and prices exactly its step: one fault of 4 pages", () => {
    const rows: [keyof RdmaCosts, number][] = [
      ["faultEventNs", 1000],
      ["faultWorkDispatchNs", 2000],
      ["umrPostNs", 300],
      ["umrPerEntryNs", 7],
      ["umrCompletionNs", 40],
      ["faultResumeNs", 5],
      ["faultAttemptNs", 11],
      ["wireNsPerByte", 1],
    ];
    for (const [row, ns] of rows) {
      const { mm, kernel, nicA, pdA, cqA } = rdmaRig();
      const nic = new Mlx5Nic(kernel, NIC_B, { costs: { ...ZERO, [row]: ns } });
      const pd = nic.allocPd();
      const cq = ibCreateCq(nic, 16);
      const q1 = ibCreateQp(pdA, { sendCq: cqA, recvCq: cqA });
      const q2 = ibCreateQp(pd, { sendCq: cq, recvCq: cq });
      ibConnectQp(q1, q2);
      const src = mm.mmap(4 * PAGE_SIZE);
      const dst = mm.mmap(4 * PAGE_SIZE);
      const local = nicA.regMr(pdA, mm, src, 4 * PAGE_SIZE, RW) as IbMr;
      const odp = nic.regMr(pd, mm, dst, 4 * PAGE_SIZE, RW | IB_ACCESS_ON_DEMAND) as IbMr;
      // The requester (nicA, default costs) prices the wire time; it is taken out below.
      const t0 = kernel.trace.clock.now;
      const wirePerByteA = nicA.costs.wireNsPerByte;
      expect(rdmaWrite(q1, local, src, odp, dst, 4 * PAGE_SIZE).status).toBe(OK);
      const dt = kernel.trace.clock.now - t0 - 4 * PAGE_SIZE * wirePerByteA;
      // Registration's snapshot UMR ran before t0; the fault: one event, one UMR of 4 entries, one attempt.
      const expected = row === "umrPerEntryNs" ? 4 * ns : row === "wireNsPerByte" ? 0 : ns;
      expect({ row, dt: Math.round(dt) }).toEqual({ row, dt: expected });
    }
  });

  it("the counter block sits at 112.. and is disjoint from every platform counter", () => {
    const names = counterNamesOf(RdmaCounter);
    expect(Math.min(...Object.values(RdmaCounter))).toBe(112);
    expect(Math.max(...Object.values(RdmaCounter))).toBeLessThan(COUNTER_CAPACITY);
    for (const i of Object.values(RdmaCounter)) expect(Object.values(DmaCounter)).not.toContain(i);
    expect(names.filter((n) => n !== undefined)).toHaveLength(Object.keys(RdmaCounter).length);
  });

  it("counters count the fault path: events, pages, UMRs, invalidated entries, dirtied pages", () => {
    const { mm, kernel, nicA, nicB, pdA, pdB, qpA } = rdmaRig();
    const src = mm.mmap(2 * PAGE_SIZE);
    const dst = mm.mmap(2 * PAGE_SIZE);
    const local = nicA.regMr(pdA, mm, src, 2 * PAGE_SIZE, RW) as IbMr;
    const odp = nicB.regMr(pdB, mm, dst, 2 * PAGE_SIZE, RW | IB_ACCESS_ON_DEMAND) as IbMr;
    const before = kernel.trace.counters.snapshot();
    expect(rdmaWrite(qpA, local, src, odp, dst, 2 * PAGE_SIZE).status).toBe(OK);
    mm.munmap(dst, 2 * PAGE_SIZE);
    const d = kernel.trace.counters.snapshot().diff(before);
    expect([RdmaCounter.OdpPageFaultEvents, RdmaCounter.OdpPagesFaulted, RdmaCounter.OdpMttZapped, RdmaCounter.OdpPagesDirtied, RdmaCounter.OdpInvalidations, RdmaCounter.RdmaWqes, RdmaCounter.RdmaCqes, RdmaCounter.RdmaBytes].map((c) => d.get(c))).toEqual([1, 2, 2, 2, 1, 1, 1, 2 * PAGE_SIZE]);
    expect(d.get(RdmaCounter.UmrPosts)).toBe(2); // the fault's update and the invalidation's zap
    expect(d.get(DmaCounter.DmaIovaLinks)).toBe(2);
    expect(d.get(DmaCounter.DmaIovaUnlinks)).toBe(2);
  });
});
