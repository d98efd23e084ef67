import { describe, expect, it } from "vitest";
import { MADV_DONTNEED } from "@dmasim/hmm-odp";
import { PAGE_SIZE } from "@dmasim/memory";
import {
  IB_ACCESS_LOCAL_WRITE,
  IB_ACCESS_ON_DEMAND,
  IB_ACCESS_REMOTE_ATOMIC,
  IB_ACCESS_REMOTE_READ,
  IB_ACCESS_REMOTE_WRITE,
  IB_IMPLICIT_ODP_LENGTH,
  IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH,
  IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_NO_FAULT,
  IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_WRITE,
  IB_UVERBS_ADVISE_MR_FLAG_FLUSH,
  IbWcOpcode,
  IbWrOpcode,
} from "./constants.js";
import type { IbMr } from "./mr.js";
import { ibPollCq, ibPostRecv } from "./verbs.js";
import { OK, pattern, postAndPoll, rdmaRead, rdmaRig, rdmaWrite } from "./test-fixtures.js";

// rdma-core tests/test_odp.py, RC cases: buffers from mmap, both MRs ODP, and (force_page_faults) a
// madvise(MADV_DONTNEED) of every buffer before each iteration, so every iteration faults on both sides.

const ACCESS = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ | IB_ACCESS_REMOTE_ATOMIC | IB_ACCESS_ON_DEMAND;
const MSG = 1024;
const ITERS = 20;

function mr(x: IbMr | number): IbMr {
  if (typeof x === "number") throw new Error(`registration failed: ${x}`);
  return x;
}

function odpPair(implicit = false) {
  const rig = rdmaRig();
  const { mm, nicA, nicB, pdA, pdB } = rig;
  const bufA = mm.mmap(4 * PAGE_SIZE);
  const bufB = mm.mmap(4 * PAGE_SIZE);
  const mrA = implicit ? mr(nicA.regMr(pdA, mm, 0, IB_IMPLICIT_ODP_LENGTH, ACCESS)) : mr(nicA.regMr(pdA, mm, bufA, 4 * PAGE_SIZE, ACCESS));
  const mrB = implicit ? mr(nicB.regMr(pdB, mm, 0, IB_IMPLICIT_ODP_LENGTH, ACCESS)) : mr(nicB.regMr(pdB, mm, bufB, 4 * PAGE_SIZE, ACCESS));
  const forceFaults = (): void => {
    mm.madvise(bufA, 4 * PAGE_SIZE, MADV_DONTNEED);
    mm.madvise(bufB, 4 * PAGE_SIZE, MADV_DONTNEED);
  };
  return { ...rig, bufA, bufB, mrA, mrB, forceFaults };
}

describe("rdma-core test_odp.py (RC)", () => {
  for (const implicit of [false, true]) {
    it(`test_odp${implicit ? "_implicit" : ""}_rc_traffic: SEND/RECV with forced faults, every iteration`, () => {
      const { mm, qpA, qpB, cqB, bufA, bufB, mrA, mrB, forceFaults, nicA, nicB } = odpPair(implicit);
      for (let i = 0; i < ITERS; i++) {
        forceFaults();
        mm.write(bufA + 100, pattern(i, MSG));
        expect(ibPostRecv(qpB, { wrId: i, sgList: [{ addr: bufB + 200, length: MSG, lkey: mrB.lkey }] })).toBe(0);
        expect(postAndPoll(qpA, { wrId: i, opcode: IbWrOpcode.SEND, sgList: [{ addr: bufA + 100, length: MSG, lkey: mrA.lkey }] }).status).toBe(OK);
        expect(ibPollCq(cqB, 1)[0]).toMatchObject({ wrId: i, status: OK, opcode: IbWcOpcode.RECV, byteLen: MSG });
        expect(mm.read(bufB + 200, MSG)).toEqual(pattern(i, MSG));
      }
      // The sender's buffer was present (the CPU wrote it) and the receiver's faulted: one event per iteration.
      expect(nicB.stats.pageFaultEvents).toBe(ITERS);
      expect(nicA.stats.pageFaultEvents).toBe(ITERS);
    });
  }

  it("test_odp_rc_rdma_write / _rdma_read: one-sided ops fault on the responder", () => {
    const { mm, qpA, bufA, bufB, mrA, mrB, forceFaults, nicB } = odpPair();
    for (let i = 0; i < ITERS; i++) {
      forceFaults();
      mm.write(bufA, pattern(i, MSG));
      expect(rdmaWrite(qpA, mrA, bufA, mrB, bufB + PAGE_SIZE, MSG).status).toBe(OK);
      expect(mm.read(bufB + PAGE_SIZE, MSG)).toEqual(pattern(i, MSG));
      mm.madvise(bufA, 4 * PAGE_SIZE, MADV_DONTNEED);
      expect(rdmaRead(qpA, mrA, bufA + 2 * PAGE_SIZE, mrB, bufB + PAGE_SIZE, MSG).status).toBe(OK);
      expect(mm.read(bufA + 2 * PAGE_SIZE, MSG)).toEqual(pattern(i, MSG));
    }
    expect(nicB.stats.pageFaultEvents).toBe(ITERS);
  });

  it("test_odp_rc_atomic_cmp_and_swp / _fetch_and_add on ODP MRs", () => {
    const { mm, qpA, bufA, bufB, mrA, mrB } = odpPair();
    const u64 = (addr: number): bigint => new DataView(mm.read(addr, 8).buffer).getBigUint64(0, true);
    const sg = [{ addr: bufA, length: 8, lkey: mrA.lkey }];
    let expected = 0n;
    for (let i = 1n; i <= 10n; i++) {
      expect(postAndPoll(qpA, { wrId: 1, opcode: IbWrOpcode.ATOMIC_FETCH_AND_ADD, sgList: sg, remoteAddr: bufB + 64, rkey: mrB.rkey, compareAdd: i }).status).toBe(OK);
      expect(u64(bufA)).toBe(expected);
      expected += i;
    }
    expect(u64(bufB + 64)).toBe(55n);
    expect(postAndPoll(qpA, { wrId: 2, opcode: IbWrOpcode.ATOMIC_CMP_AND_SWP, sgList: sg, remoteAddr: bufB + 64, rkey: mrB.rkey, compareAdd: 55n, swap: 7n }).status).toBe(OK);
    expect(u64(bufB + 64)).toBe(7n);
    expect(u64(bufA)).toBe(55n);
  });

  for (const implicit of [false, true]) {
    for (const flush of [true, false]) {
      it(`test_odp${implicit ? "_implicit" : ""}_${flush ? "sync" : "async"}_prefetch_rc_traffic and no_page_fault`, () => {
        const { mm, qpA, bufA, bufB, mrA, mrB, forceFaults, nicA, nicB, pdA, pdB } = odpPair(implicit);
        for (let i = 0; i < 4; i++) {
          forceFaults();
          mm.write(bufA, pattern(i, MSG));
          const flags = flush ? IB_UVERBS_ADVISE_MR_FLAG_FLUSH : 0;
          expect(nicA.adviseMr(pdA, IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH, flags, [{ addr: bufA, length: MSG, lkey: mrA.lkey }])).toBe(0);
          expect(nicB.adviseMr(pdB, IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_WRITE, flags, [{ addr: bufB, length: MSG, lkey: mrB.lkey }])).toBe(0);
          nicA.flushWork();
          nicB.flushWork();
          const faults = nicB.stats.pageFaultEvents;
          expect(rdmaWrite(qpA, mrA, bufA, mrB, bufB, MSG).status).toBe(OK);
          // Prefetched writable: the WRITE faulted nothing on the responder.
          expect(nicB.stats.pageFaultEvents).toBe(faults);
          expect(mm.read(bufB, MSG)).toEqual(pattern(i, MSG));
        }
        // PREFETCH_NO_FAULT maps what is present and faults nothing.
        forceFaults();
        mm.write(bufB + PAGE_SIZE, pattern(9, 8));
        expect(nicB.adviseMr(pdB, IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_NO_FAULT, IB_UVERBS_ADVISE_MR_FLAG_FLUSH, [{ addr: bufB, length: 2 * PAGE_SIZE, lkey: mrB.lkey }])).toBe(0);
        expect(mm.pteAt(bufB)?.kind).toBe(0);
        const faults = nicB.stats.pageFaultEvents;
        expect(rdmaRead(qpA, mrA, bufA, mrB, bufB + PAGE_SIZE, 8).status).toBe(OK);
        expect(nicB.stats.pageFaultEvents).toBe(faults);
        expect(mm.read(bufA, 8)).toEqual(pattern(9, 8));
      });
    }
  }
});
