import { Counter, createDmaKernel, priceCounters } from "@dmasim/dma";
import { MADV_DONTNEED, Mm, MmSystem } from "@dmasim/hmm-odp";
import type { HmmDmaStrategy } from "@dmasim/hmm-odp";
import { GiB, PAGE_SIZE } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import { IB_ACCESS_LOCAL_WRITE, IB_ACCESS_ON_DEMAND, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE, IbWcStatus, IbWrOpcode } from "./constants.js";
import type { RdmaCosts } from "./costs.js";
import { RdmaInputError } from "./errors.js";
import { Mlx5Nic } from "./nic.js";
import { ibConnectQp, ibCreateCq, ibCreateQp, ibPollCq, ibPostSend } from "./verbs.js";

/** One row of the ODP comparison: one DMA strategy of the driver over one workload. */
export interface OdpComparisonRow {
  /** The driver's way of DMA-mapping ODP pages this row measured. */
  readonly strategy: HmmDmaStrategy;
  /** Pages of the ODP MR written. */
  readonly pages: number;
  /** Bytes per RDMA WRITE. */
  readonly wqeBytes: number;
  /** Kernel bytes of DMA bookkeeping per page: the pfn word, plus a dma_addr_t for the pre-two-step umem, plus one dma_iova_state per umem. */
  readonly bookkeepingBytesPerPage: number;
  /** IOVA allocations over registration and the fault-in pass (range cache and tree). */
  readonly iovaAllocations: number;
  /** IOMMU PTEs written over registration and the fault-in pass. */
  readonly pteWrites: number;
  /** iotlb_sync_map calls over registration and the fault-in pass. */
  readonly iotlbSyncs: number;
  /** NIC page-fault events (one per WQE that met an absent page). */
  readonly faults: number;
  /** Modelled time of registration and the fault-in pass (ns): the NIC's fault path and wire time plus the DMA counters priced by the kernel's profile. */
  readonly modelledNs: number;
  /** Bytes written per modelled second over the fault-in pass. */
  readonly modelledBytesPerSecond: number;
  /** Modelled time of the second pass over the same pages (no fault): the steady state. */
  readonly steadyNs: number;
}

/**
 * A NIC workload under each way of DMA-mapping ODP pages: RDMA WRITEs of `wqeBytes` over an ODP MR of
 * `pages` fresh pages, registered (counted from there), then written (each WQE faults its pages in: one event, one hmm_range_fault, the DMA mapping of
 * every page, one UMR), a second pass that faults nothing, then madvise(DONTNEED) over the MR (the
 * invalidation unmaps). Deterministic; the counters are exact, the times a model.
 */
export function compareOdpDmaStrategy(strategy: HmmDmaStrategy, pages: number, wqeBytes = 64 * 1024, costs: Partial<RdmaCosts> = {}): OdpComparisonRow {
  const fn = "compareOdpDmaStrategy";
  if (!Number.isSafeInteger(pages) || pages < 1 || pages > 1 << 20) throw new RdmaInputError(fn, "pages", pages, "a page count from 1 to 1 M");
  if (!Number.isSafeInteger(wqeBytes) || wqeBytes < 1 || wqeBytes > pages * PAGE_SIZE) throw new RdmaInputError(fn, "wqeBytes", wqeBytes, "a positive WQE size no larger than the MR");
  const bdf = "0000:01:00.0";
  const platform = createPlatform({ memory: { ramBytes: Math.max(1 * GiB, 2 * pages * PAGE_SIZE) }, iommu: {}, endpoints: [{ bdf }] });
  const kernel = createDmaKernel(platform, { debug: "off", swiotlb: false });
  const mm = new Mm(new MmSystem(kernel));
  const nic = new Mlx5Nic(kernel, bdf, { costs, odpDma: strategy });
  const pd = nic.allocPd();
  const cq = ibCreateCq(nic, 16);
  const q1 = ibCreateQp(pd, { sendCq: cq, recvCq: cq });
  const q2 = ibCreateQp(pd, { sendCq: cq, recvCq: cq });
  ibConnectQp(q1, q2);
  const RW = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ;
  const src = mm.mmap(wqeBytes);
  const local = nic.regMr(pd, mm, src, wqeBytes, RW);
  const dst = mm.mmap(pages * PAGE_SIZE);
  const clock = kernel.trace.clock;
  const before = kernel.trace.counters.snapshot();
  const tReg = clock.now;
  const mr = nic.regMr(pd, mm, dst, pages * PAGE_SIZE, RW | IB_ACCESS_ON_DEMAND);
  if (typeof local === "number" || typeof mr === "number") throw new RdmaInputError(fn, "strategy", strategy, "a strategy whose registration succeeds");
  const regNs = clock.now - tReg;
  const pass = (): number => {
    const t0 = clock.now;
    for (let off = 0; off < pages * PAGE_SIZE; off += wqeBytes) {
      const len = Math.min(wqeBytes, pages * PAGE_SIZE - off);
      ibPostSend(q1, { wrId: off, opcode: IbWrOpcode.RDMA_WRITE, sgList: [{ addr: src, length: len, lkey: local.lkey }], remoteAddr: dst + off, rkey: mr.rkey });
      if (ibPollCq(cq, 1)[0]?.status !== IbWcStatus.SUCCESS) throw new RdmaInputError(fn, "strategy", strategy, "a workload that completes");
    }
    return clock.now - t0;
  };
  const faults0 = nic.stats.pageFaultEvents;
  const clockNs = regNs + pass();
  const diff = kernel.trace.counters.snapshot().diff(before);
  const faults = nic.stats.pageFaultEvents - faults0;
  const modelledNs = Math.round(clockNs + priceCounters(diff, kernel.profile).totalNs);
  const before2 = kernel.trace.counters.snapshot();
  const steadyClock = pass();
  const steadyNs = Math.round(steadyClock + priceCounters(kernel.trace.counters.snapshot().diff(before2), kernel.profile).totalNs);
  mm.madvise(dst, pages * PAGE_SIZE, MADV_DONTNEED);
  nic.deregMr(mr);
  nic.deregMr(local);
  mm.exit();
  return {
    strategy,
    pages,
    wqeBytes,
    bookkeepingBytesPerPage: strategy === "pfn-list + dma_map_page" ? 16 : 8 + 16 / pages,
    iovaAllocations: diff.get(Counter.IovaAllocCache) + diff.get(Counter.IovaAllocTree),
    pteWrites: diff.get(Counter.PteWrites),
    iotlbSyncs: diff.get(Counter.IotlbSyncMap),
    faults,
    modelledNs,
    modelledBytesPerSecond: Math.round((pages * PAGE_SIZE * 1e9) / Math.max(1, modelledNs)),
    steadyNs,
  };
}

/** The comparison as a markdown table, one row per strategy for each MR size. */
export function odpComparisonTable(sizes: readonly number[], wqeBytes = 64 * 1024): string {
  const strategies: HmmDmaStrategy[] = ["pfn-list + dma_map_page", "hmm_dma_map", "hmm_dma_map batched"];
  const lines = [
    "| MR | strategy | bookkeeping B/page | IOVA allocs | PTE writes | IOTLB syncs | NIC faults | modelled fault-in | modelled MB/s | steady pass |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const bytes of sizes) {
    for (const s of strategies) {
      const r = compareOdpDmaStrategy(s, Math.ceil(bytes / PAGE_SIZE), Math.min(wqeBytes, bytes));
      lines.push(
        `| ${bytes >= 2 ** 20 ? `${bytes / 2 ** 20} MiB` : `${bytes / 1024} KiB`} | ${s} | ${r.bookkeepingBytesPerPage.toFixed(2)} | ${r.iovaAllocations} | ${r.pteWrites} | ${r.iotlbSyncs} | ${r.faults} | ${(r.modelledNs / 1000).toFixed(1)} µs | ${(r.modelledBytesPerSecond / 1e6).toFixed(0)} | ${(r.steadyNs / 1000).toFixed(1)} µs |`,
      );
    }
  }
  return lines.join("\n");
}
