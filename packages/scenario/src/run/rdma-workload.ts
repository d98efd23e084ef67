import { Counter, priceCounters } from "@dmasim/dma";
import { MADV_DONTNEED } from "@dmasim/hmm-odp";
import { PAGE_SIZE } from "@dmasim/memory";
import { IbWrOpcode } from "@dmasim/rdma";
import type { OdpDmaStrategy } from "@dmasim/rdma";
import { check } from "./result.js";
import type { RdmaRun } from "./rdma.js";
import { ODP, RW } from "./rdma.js";
import { rdmaPattern } from "./rdma-test-odp.js";

/**
 * The NIC workload of the ODP DMA comparison (compareOdpDmaStrategy of @dmasim/rdma, on the scenario's
 * platform): an ODP MR over `pages` fresh pages, RDMA WRITEs of `wqeBytes` from a pinned buffer (each
 * WQE faults its pages in with one event and one UMR), a second pass that faults nothing (the steady
 * state), every page checked by the CPU, then madvise(MADV_DONTNEED) over the MR (the invalidation
 * unmaps every page). Metrics: bookkeeping bytes per page, IOVA allocations, PTE writes, IOTLB syncs,
 * faults, the modelled fault latency and the modelled throughput of the fault-in pass.
 */
export function runNicWorkload(r: RdmaRun, strategy: OdpDmaStrategy): void {
  const { w, mm, nicA, nicB, pdA, pdB, checks, metrics } = r;
  const pages = w.pages ?? 512;
  const wqe = Math.min(w.wqeBytes ?? 64 * 1024, pages * PAGE_SIZE);
  const size = pages * PAGE_SIZE;
  const seed = r.s.seed ?? 1;
  const kernel = nicB.kernel;
  const clock = kernel.trace.clock;
  const src = mm.mmap(wqe);
  const local = r.reg(nicA, pdA, src, wqe, RW);
  const dst = mm.mmap(size);
  const before = kernel.trace.counters.snapshot();
  const t0 = clock.now;
  const mr = r.reg(nicB, pdB, dst, size, ODP);
  const pass = (tag: number): void => {
    for (let off = 0, i = 0; off < size; off += wqe, i++) {
      const len = Math.min(wqe, size - off);
      mm.write(src, rdmaPattern(len, seed + tag, i));
      r.post({ wrId: i, opcode: IbWrOpcode.RDMA_WRITE, sgList: [{ addr: src, length: len, lkey: local.lkey }], remoteAddr: dst + off, rkey: mr.rkey });
    }
  };
  const verifyPass = (tag: number, what: string): void => {
    for (let off = 0, i = 0; off < size; off += wqe, i++) {
      const len = Math.min(wqe, size - off);
      r.verify(`${what}, WQE ${i}`, mm.read(dst + off, len), rdmaPattern(len, seed + tag, i));
    }
  };
  const f0 = nicB.stats.pageFaultEvents;
  pass(0);
  const faultInClock = clock.now - t0;
  const diff = kernel.trace.counters.snapshot().diff(before);
  const faults = nicB.stats.pageFaultEvents - f0;
  const faultInNs = Math.round(faultInClock + priceCounters(diff, kernel.profile).totalNs);
  verifyPass(0, "fault-in pass");
  const before2 = kernel.trace.counters.snapshot();
  const t1 = clock.now;
  const f1 = nicB.stats.pageFaultEvents;
  pass(1);
  const steadyNs = Math.round(clock.now - t1 + priceCounters(kernel.trace.counters.snapshot().diff(before2), kernel.profile).totalNs);
  const steadyFaults = nicB.stats.pageFaultEvents - f1;
  verifyPass(1, "steady pass");
  mm.madvise(dst, size, MADV_DONTNEED);
  let live = 0;
  for (const e of mr.mtt) if (e !== 0) live++;
  const wqes = Math.ceil(size / wqe);
  checks.push(check("one fault per WQE, none in the steady state", faults === wqes && steadyFaults === 0, `${faults} NIC fault(s) for ${wqes} WQE(s) over fresh pages; ${steadyFaults} on the second pass`));
  checks.push(check("the invalidation unmapped every page", live === 0, `${live} live MTT entr${live === 1 ? "y" : "ies"} after madvise(MADV_DONTNEED) over the MR`));
  metrics.pages = pages;
  metrics.wqeBytes = wqe;
  metrics.bookkeepingBytesPerPage = strategy === "pfn-list + dma_map_page" ? 16 : 8 + 16 / pages;
  metrics.iovaAllocations = diff.get(Counter.IovaAllocCache) + diff.get(Counter.IovaAllocTree);
  metrics.pteWrites = diff.get(Counter.PteWrites);
  metrics.iotlbSyncs = diff.get(Counter.IotlbSyncMap);
  metrics.faultInNs = faultInNs;
  metrics.modelledMBps = Math.round((size * 1e3) / Math.max(1, faultInNs));
  metrics.steadyNs = steadyNs;
}
