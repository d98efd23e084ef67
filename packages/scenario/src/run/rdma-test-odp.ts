import { MADV_DONTNEED, PteKind } from "@dmasim/hmm-odp";
import { PAGE_SIZE, patternBytes } from "@dmasim/memory";
import {
  IB_ACCESS_HUGETLB,
  IB_IMPLICIT_ODP_LENGTH,
  IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH,
  IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_NO_FAULT,
  IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_WRITE,
  IB_UVERBS_ADVISE_MR_FLAG_FLUSH,
  ibPollCq,
  ibPostRecv,
  IbWcStatus,
  IbWrOpcode,
} from "@dmasim/rdma";
import type { IbMr } from "@dmasim/rdma";
import { check } from "./result.js";
import type { RdmaRun } from "./rdma.js";
import { ODP } from "./rdma.js";

const MB2 = 2 * 1024 * 1024;

/** Bytes of iteration `i` of a scenario: distinct per iteration and per seed. */
export function rdmaPattern(len: number, seed: number, i: number): Uint8Array {
  return patternBytes(len, ((seed * 7919 + i * 104_729) >>> 0) + 1);
}

/**
 * rdma-core's tests/test_odp.py, RC cases: a buffer per side from mmap, both MRs ODP (explicit over the
 * buffer, or implicit over the whole address space), and before each iteration a madvise(MADV_DONTNEED)
 * of both buffers (force_page_faults), so every iteration faults on the side the NIC touches.
 */
export function runTestOdp(r: RdmaRun): void {
  const { w, mm, nicA, nicB, pdA, pdB, qpB, checks, metrics } = r;
  const seed = r.s.seed ?? 1;
  const iters = w.iterations ?? 10;
  const msg = w.messageBytes ?? 1024;
  const huge = w.test === "huge-pages";
  const bufBytes = huge ? MB2 : Math.ceil((2 * msg + 2 * PAGE_SIZE) / PAGE_SIZE) * PAGE_SIZE;
  const bufA = huge ? mm.mmap(bufBytes, { hugetlb: true }) : mm.mmap(bufBytes);
  const bufB = huge ? mm.mmap(bufBytes, { hugetlb: true }) : mm.mmap(bufBytes);
  const access = huge ? ODP | IB_ACCESS_HUGETLB : ODP;
  const implicit = w.implicit === true;
  const mrA: IbMr = implicit ? r.reg(nicA, pdA, 0, IB_IMPLICIT_ODP_LENGTH, access) : r.reg(nicA, pdA, bufA, bufBytes, access);
  const mrB: IbMr = implicit && nicA === nicB ? mrA : implicit ? r.reg(nicB, pdB, 0, IB_IMPLICIT_ODP_LENGTH, access) : r.reg(nicB, pdB, bufB, bufBytes, access);
  const forceFaults = (): void => {
    mm.madvise(bufA, bufBytes, MADV_DONTNEED);
    mm.madvise(bufB, bufBytes, MADV_DONTNEED);
  };
  const faultsB = (): number => nicB.stats.pageFaultEvents;
  const sge = (addr: number, length: number, mr: IbMr) => [{ addr, length, lkey: mr.lkey }];
  const u64 = (addr: number): bigint => new DataView(mm.read(addr, 8).slice().buffer).getBigUint64(0, true);
  const n = (v: number): string => v.toLocaleString("en-US");
  let faultingIters = 0;
  // Each iteration's offset moves through the buffer, as the Python test's messages do.
  const off = (i: number): number => (i * 64) % (bufBytes - msg - PAGE_SIZE);

  switch (w.test) {
    case "rc-traffic": {
      for (let i = 0; i < iters; i++) {
        forceFaults();
        const data = rdmaPattern(msg, seed, i);
        mm.write(bufA + off(i), data);
        const f = faultsB();
        ibPostRecv(qpB, { wrId: i, sgList: sge(bufB + off(i), msg, mrB) });
        r.post({ wrId: i, opcode: IbWrOpcode.SEND, sgList: sge(bufA + off(i), msg, mrA) });
        const wc = ibPollCq(qpB.recvCq, 1)[0];
        if (wc?.status !== IbWcStatus.SUCCESS || wc.byteLen !== msg) r.verify(`RECV completion of iteration ${i}`, new Uint8Array(1), new Uint8Array([1]));
        r.verify(`SEND/RECV iteration ${i}`, mm.read(bufB + off(i), msg), data);
        if (faultsB() > f) faultingIters++;
      }
      break;
    }
    case "rdma-write":
    case "huge-pages": {
      for (let i = 0; i < iters; i++) {
        // Hugetlb: no forced faults (madvise(MADV_DONTNEED) of a hugetlb VMA is -EINVAL here, as before Linux 5.18), so the first
        // WRITE faults the whole 2 MiB page in and the others find it mapped.
        if (!huge) forceFaults();
        const data = rdmaPattern(msg, seed, i);
        mm.write(bufA + off(i), data);
        const f = faultsB();
        r.post({ wrId: i, opcode: IbWrOpcode.RDMA_WRITE, sgList: sge(bufA + off(i), msg, mrA), remoteAddr: bufB + off(i), rkey: mrB.rkey });
        r.verify(`RDMA WRITE iteration ${i}`, mm.read(bufB + off(i), msg), data);
        if (faultsB() > f) faultingIters++;
      }
      if (huge) {
        const mapped = implicit ? undefined : mrB.odp?.npages;
        const pmd = mm.pteAt(bufB)?.pmd === true;
        checks.push(
          check(
            "one fault maps the huge page",
            pmd && mapped === MB2 / PAGE_SIZE && faultingIters === 1,
            `${faultingIters} fault(s) in ${iters} WRITE(s); the responder's buffer mapped by a PMD: ${pmd}; ${mapped ?? 0} MTT entries DMA-mapped (512 expected, page_shift 21)`,
          ),
        );
      }
      break;
    }
    case "rdma-read": {
      for (let i = 0; i < iters; i++) {
        forceFaults();
        const data = rdmaPattern(msg, seed, i);
        // The CPU write makes the page present again, but the invalidation zapped the NIC's MTT entry.
        mm.write(bufB + off(i), data);
        const f = faultsB();
        r.post({ wrId: i, opcode: IbWrOpcode.RDMA_READ, sgList: sge(bufA + off(i), msg, mrA), remoteAddr: bufB + off(i), rkey: mrB.rkey });
        r.verify(`RDMA READ iteration ${i}`, mm.read(bufA + off(i), msg), data);
        if (faultsB() > f) faultingIters++;
      }
      break;
    }
    case "atomic": {
      // After the forced fault the remote word reads zero: fetch-and-add returns 0, then compare-and-swap.
      for (let i = 0; i < iters; i++) {
        forceFaults();
        const at = bufB + 8 * (i % 64);
        const add = BigInt(i + 1) * 0x1_0000_0001n;
        const f = faultsB();
        r.post({ wrId: 2 * i, opcode: IbWrOpcode.ATOMIC_FETCH_AND_ADD, sgList: sge(bufA, 8, mrA), remoteAddr: at, rkey: mrB.rkey, compareAdd: add });
        r.verify(`fetch-and-add ${i}: the old value`, bytes64(u64(bufA)), bytes64(0n));
        r.post({ wrId: 2 * i + 1, opcode: IbWrOpcode.ATOMIC_CMP_AND_SWP, sgList: sge(bufA + 8, 8, mrA), remoteAddr: at, rkey: mrB.rkey, compareAdd: add, swap: add * 3n });
        r.verify(`compare-and-swap ${i}: the old value`, bytes64(u64(bufA + 8)), bytes64(add));
        r.verify(`compare-and-swap ${i}: the swapped word`, bytes64(u64(at)), bytes64(add * 3n));
        if (faultsB() > f) faultingIters++;
      }
      break;
    }
    case "prefetch-sync":
    case "prefetch-async": {
      const flags = w.test === "prefetch-sync" ? IB_UVERBS_ADVISE_MR_FLAG_FLUSH : 0;
      let prefetchFaults = 0;
      let advised = 0;
      for (let i = 0; i < iters; i++) {
        forceFaults();
        const data = rdmaPattern(msg, seed, i);
        mm.write(bufA + off(i), data);
        advised += nicA.adviseMr(pdA, IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH, flags, sge(bufA + off(i), msg, mrA)) === 0 ? 1 : 0;
        advised += nicB.adviseMr(pdB, IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_WRITE, flags, sge(bufB + off(i), msg, mrB)) === 0 ? 1 : 0;
        // ibv_advise_mr without FLUSH returns at once; the work runs on the NIC's queue.
        nicA.flushWork();
        nicB.flushWork();
        const f = faultsB();
        r.post({ wrId: i, opcode: IbWrOpcode.RDMA_WRITE, sgList: sge(bufA + off(i), msg, mrA), remoteAddr: bufB + off(i), rkey: mrB.rkey });
        prefetchFaults += faultsB() - f;
        r.verify(`prefetched RDMA WRITE iteration ${i}`, mm.read(bufB + off(i), msg), data);
        faultingIters++;
      }
      checks.push(check("prefetch left nothing to fault", advised === 2 * iters && prefetchFaults === 0, `${advised} of ${2 * iters} ibv_advise_mr call(s) returned 0; ${prefetchFaults} page fault(s) on the responder after PREFETCH_WRITE`));
      break;
    }
    case "prefetch-no-fault": {
      let faulted = 0;
      let present = 0;
      let advised = 0;
      for (let i = 0; i < iters; i++) {
        forceFaults();
        const data = rdmaPattern(msg, seed, i);
        // One page present, one not: PREFETCH_NO_FAULT maps what is there and faults nothing in.
        const at = bufB + PAGE_SIZE;
        mm.write(at, data);
        advised += nicB.adviseMr(pdB, IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_NO_FAULT, IB_UVERBS_ADVISE_MR_FLAG_FLUSH, sge(bufB, 2 * PAGE_SIZE, mrB)) === 0 ? 1 : 0;
        if (mm.pteAt(bufB)?.kind === PteKind.PRESENT) present++;
        const f = faultsB();
        r.post({ wrId: i, opcode: IbWrOpcode.RDMA_READ, sgList: sge(bufA, msg, mrA), remoteAddr: at, rkey: mrB.rkey });
        faulted += faultsB() - f;
        r.verify(`RDMA READ after PREFETCH_NO_FAULT, iteration ${i}`, mm.read(bufA, msg), data);
        faultingIters++;
      }
      checks.push(
        check(
          "PREFETCH_NO_FAULT mapped only what was present",
          advised === iters && present === 0 && faulted === 0,
          `${advised} of ${iters} advice(s) returned 0; ${present} absent page(s) faulted in by the advice; ${faulted} NIC fault(s) on the present page`,
        ),
      );
      break;
    }
    default:
      throw new Error(`not a test_odp.py case: ${w.test}`);
  }
  if (!w.test.startsWith("prefetch") && !huge) {
    checks.push(check("a fault every iteration", faultingIters === iters, `${n(faultingIters)} of ${n(iters)} iteration(s) faulted on the responder after madvise(MADV_DONTNEED)`));
  }
  metrics.iterations = iters;
  metrics.messageBytes = msg;
  metrics.odpMttEntries = implicit ? 0 : (mrB.odp?.npages ?? 0);
}

function bytes64(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true);
  return b;
}
