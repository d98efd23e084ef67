import { DMA_MAPPING_ERROR, DmaDirection, createDmaKernel, dmaMapPhys, dmaUnmapPhys, priceCounters, unsafeDmaAddr } from "@dmasim/dma";
import { GiB, PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import { Counter } from "@dmasim/dma";
import { HMM_PFN_REQ_FAULT, HMM_PFN_REQ_WRITE, HmmErrno } from "./constants.js";
import { HmmDmaMap, hmmDmaMapAlloc, hmmDmaMapFree, hmmDmaMapPfn, hmmDmaMapPfnRun, hmmDmaUnmapPfn, hmmP2pState } from "./hmm-dma.js";
import { HmmRange, hmmRangeFault } from "./hmm.js";
import { MmSystem } from "./mm-system.js";
import { Mm } from "./mm.js";
import { MmuIntervalNotifier, mmuIntervalNotifierInsert, mmuIntervalReadBegin, mmuIntervalSetSeq } from "./notifier.js";

/** The three ways a driver can DMA-map what hmm_range_fault returns. */
export type HmmDmaStrategy = "pfn-list + dma_map_page" | "hmm_dma_map" | "hmm_dma_map batched";

/** Fault-path costs the DMA cost profile has no counter for. Both assumed (Part E.2 of the reference), overridable. */
export interface HmmFaultCosts {
  /** handle_mm_fault, minor (a new zeroed page). Assumed 1500 ns (1–2 µs, NP-RDMA's range). */
  handleMmFaultMinorNs: number;
  /** hmm_range_fault's walk, per entry. Assumed 10 ns (order of magnitude; the model measures ~4 ns). */
  hmmWalkPerPteNs: number;
}

/** Fault costs used when none are given: a minor fault 1.5 µs, a page-table walk 10 ns per PTE (assumed figures). */
export const DEFAULT_HMM_FAULT_COSTS: HmmFaultCosts = { handleMmFaultMinorNs: 1500, hmmWalkPerPteNs: 10 };

/** One row of the comparison: one strategy over one range size. */
export interface HmmDmaComparisonRow {
  /** How the range was mapped. */
  readonly strategy: HmmDmaStrategy;
  /** Bytes in the range. */
  readonly bytes: number;
  /** Pages in the range. */
  readonly pages: number;
  /** Kernel bytes of DMA bookkeeping per page: a pfn word per page, plus a dma_addr_t per page for the pfn list, plus one dma_iova_state per range. */
  readonly bookkeepingBytesPerPage: number;
  /** IOVA allocations the mapping made. */
  readonly iovaAllocations: number;
  /** IOMMU page-table entries written. */
  readonly pteWrites: number;
  /** IOTLB syncs (iommu_iotlb_sync) issued. */
  readonly iotlbSyncs: number;
  /** Modelled time of the fault-in and the mapping (ns): DMA counters priced by the kernel's cost profile plus the fault costs. */
  readonly faultInNs: number;
}

const BIDIR = DmaDirection.BIDIRECTIONAL;

/**
 * Faults in and maps `bytes` of fresh anonymous memory for a device behind a strict IOMMU, the way each
 * strategy does it (64-page fault chunks, as dmirror and mlx5 ODP use), then unmaps it. Deterministic.
 */
export function compareHmmDmaStrategy(strategy: HmmDmaStrategy, bytes: number, costs: HmmFaultCosts = DEFAULT_HMM_FAULT_COSTS): HmmDmaComparisonRow {
  const pages = Math.ceil(bytes / PAGE_SIZE);
  const platform = createPlatform({ memory: { ramBytes: Math.max(2 * GiB, 2 * pages * PAGE_SIZE) }, iommu: {}, endpoints: [{ bdf: "0000:01:00.0" }] });
  const kernel = createDmaKernel(platform, { debug: "off", swiotlb: false, devices: { "0000:01:00.0": { dmaMaskBits: 48 } } });
  const dev = kernel.device("0000:01:00.0");
  const sys = new MmSystem(kernel);
  const mm = new Mm(sys);
  const sub = new MmuIntervalNotifier();
  mmuIntervalNotifierInsert(sub, mm, 0, 2 ** 47, {
    invalidate: (s, _r, seq) => {
      mmuIntervalSetSeq(s, seq);
      return true;
    },
  });
  const a = mm.mmap(pages * PAGE_SIZE);
  const before = platform.trace.counters.snapshot();
  const faultsBefore = sys.stats.minorFaults;
  const map = new HmmDmaMap();
  let dmaList: Float64Array | undefined;
  let pfns: Uint32Array;
  let flags: Uint16Array;
  if (strategy === "pfn-list + dma_map_page") {
    pfns = new Uint32Array(pages);
    flags = new Uint16Array(pages);
    dmaList = new Float64Array(pages);
  } else {
    if (hmmDmaMapAlloc(dev, map, pages, PAGE_SIZE) !== 0) throw new Error("hmm_dma_map_alloc failed");
    pfns = map.pfns;
    flags = map.flags;
  }
  const p2p = hmmP2pState();
  let walked = 0;
  const CHUNK = 64;
  for (let i = 0; i < pages; i += CHUNK) {
    const n = Math.min(CHUNK, pages - i);
    const range = new HmmRange({ notifier: sub, start: a + i * PAGE_SIZE, end: a + (i + n) * PAGE_SIZE, pfns, flags, index: i, defaultFlags: HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE });
    let ret: number;
    do {
      range.notifierSeq = mmuIntervalReadBegin(sub);
      mm.mmapReadLock();
      ret = hmmRangeFault(range);
      mm.mmapReadUnlock();
      walked += n;
    } while (ret === -HmmErrno.EBUSY);
    if (ret !== 0) throw new Error(`hmm_range_fault returned ${ret}`);
    if (dmaList !== undefined) {
      for (let j = i; j < i + n; j++) {
        const addr = dmaMapPhys(dev, unsafePhysAddr((pfns[j] ?? 0) * PAGE_SIZE), PAGE_SIZE, BIDIR);
        if (addr === DMA_MAPPING_ERROR) throw new Error("dma_map_page failed");
        dmaList[j] = addr;
      }
    } else if (strategy === "hmm_dma_map") {
      for (let j = i; j < i + n; j++) if (hmmDmaMapPfn(dev, map, j, p2p) === DMA_MAPPING_ERROR) throw new Error("hmm_dma_map_pfn failed");
    } else if (hmmDmaMapPfnRun(dev, map, i, n, p2p) !== n) {
      throw new Error("hmm_dma_map_pfn_run failed");
    }
  }
  const diff = platform.trace.counters.snapshot().diff(before);
  const faults = sys.stats.minorFaults - faultsBefore;
  const priced = priceCounters(diff, kernel.profile).totalNs;
  const row: HmmDmaComparisonRow = {
    strategy,
    bytes,
    pages,
    bookkeepingBytesPerPage: dmaList !== undefined ? 16 : 8 + 16 / pages,
    iovaAllocations: diff.get(Counter.IovaAllocCache) + diff.get(Counter.IovaAllocTree),
    pteWrites: diff.get(Counter.PteWrites),
    iotlbSyncs: diff.get(Counter.IotlbSyncMap),
    faultInNs: Math.round(priced + faults * costs.handleMmFaultMinorNs + walked * costs.hmmWalkPerPteNs),
  };
  if (dmaList !== undefined) {
    for (let j = 0; j < pages; j++) dmaUnmapPhys(dev, unsafeDmaAddr(dmaList[j] ?? 0), PAGE_SIZE, BIDIR);
  } else {
    for (let j = 0; j < pages; j++) hmmDmaUnmapPfn(dev, map, j);
    hmmDmaMapFree(dev, map);
  }
  return row;
}

/** The comparison table as markdown, one row per strategy and size. */
export function hmmDmaComparisonTable(sizes: readonly number[], costs: HmmFaultCosts = DEFAULT_HMM_FAULT_COSTS): string {
  const strategies: HmmDmaStrategy[] = ["pfn-list + dma_map_page", "hmm_dma_map", "hmm_dma_map batched"];
  const lines = [
    "| range | strategy | bookkeeping B/page | IOVA allocs | PTE writes | IOTLB syncs | modelled fault-in |",
    "|---|---|---|---|---|---|---|",
  ];
  for (const bytes of sizes) {
    for (const s of strategies) {
      const r = compareHmmDmaStrategy(s, bytes, costs);
      lines.push(`| ${human(bytes)} | ${s} | ${r.bookkeepingBytesPerPage.toFixed(2)} | ${r.iovaAllocations} | ${r.pteWrites} | ${r.iotlbSyncs} | ${(r.faultInNs / 1000).toFixed(1)} µs |`);
    }
  }
  return lines.join("\n");
}

function human(bytes: number): string {
  if (bytes >= 2 ** 30) return `${bytes / 2 ** 30} GiB`;
  if (bytes >= 2 ** 20) return `${bytes / 2 ** 20} MiB`;
  return `${bytes / 1024} KiB`;
}
