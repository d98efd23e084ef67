import { unsafeIova } from "@dmasim/iommu";
import { describe, expect, it } from "vitest";
import { compareOdpDmaStrategy, odpComparisonTable } from "./compare.js";
import { MADV_DONTNEED } from "@dmasim/hmm-odp";
import { PAGE_SIZE } from "@dmasim/memory";
import { IB_ACCESS_LOCAL_WRITE, IB_ACCESS_ON_DEMAND, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE } from "./constants.js";
import { RdmaInputError } from "./errors.js";
import type { IbMr } from "./mr.js";
import { Mlx5Nic } from "./nic.js";
import { ibConnectQp, ibCreateCq, ibCreateQp } from "./verbs.js";
import { NIC_B, OK, pattern, rdmaRead, rdmaRig, rdmaWrite } from "./test-fixtures.js";

describe("ODP DMA strategies for a NIC workload: dma_map_page per page vs hmm_dma_map vs batched", () => {
  it("counts what each strategy does: IOVAs, PTE writes, IOTLB syncs, faults", () => {
    const [pfnList, hmm, batched] = (["pfn-list + dma_map_page", "hmm_dma_map", "hmm_dma_map batched"] as const).map((s) => compareOdpDmaStrategy(s, 256, 64 * 1024));
    // 256 pages in 16 WQEs of 64 KiB: 16 faults of 16 pages each, every strategy.
    for (const r of [pfnList, hmm, batched]) {
      expect(r?.faults).toBe(16);
      expect(r?.pteWrites).toBeGreaterThanOrEqual(256);
    }
    expect(pfnList?.iovaAllocations).toBeGreaterThanOrEqual(256);
    expect(pfnList?.iotlbSyncs).toBeGreaterThanOrEqual(256);
    expect(pfnList?.bookkeepingBytesPerPage).toBe(16);
    expect(hmm?.iovaAllocations).toBe(1); // the MR's window, at registration
    expect(batched?.iovaAllocations).toBe(1);
    expect(hmm?.iotlbSyncs).toBe(256);
    expect(batched?.iotlbSyncs).toBe(16);
    expect(hmm?.bookkeepingBytesPerPage).toBeCloseTo(8.0625);
    expect(batched?.modelledNs).toBeLessThan(hmm?.modelledNs ?? 0);
    // The steady pass faults nothing: the same for all three.
    expect(hmm?.steadyNs).toBe(batched?.steadyNs);
  });

  it("the table has a row per strategy and size; bad sizes are refused", () => {
    const t = odpComparisonTable([64 * 1024]);
    expect(t.split("\n")).toHaveLength(5);
    expect(() => compareOdpDmaStrategy("hmm_dma_map", 0)).toThrow(RdmaInputError);
    expect(() => compareOdpDmaStrategy("hmm_dma_map", 4, 5 * 4096)).toThrow(RdmaInputError);
  });
});

describe("each strategy moves the right bytes and unmaps on invalidation", () => {
  for (const strategy of ["pfn-list + dma_map_page", "hmm_dma_map", "hmm_dma_map batched"] as const) {
    it(strategy, () => {
      const { mm, kernel, nicA, pdA, cqA, sys } = rdmaRig();
      const nic = new Mlx5Nic(kernel, NIC_B, { odpDma: strategy });
      const pd = nic.allocPd();
      const cq = ibCreateCq(nic, 8);
      const qa = ibCreateQp(pdA, { sendCq: cqA, recvCq: cqA });
      ibConnectQp(qa, ibCreateQp(pd, { sendCq: cq, recvCq: cq }));
      const RW = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ;
      const src = mm.mmap(8 * PAGE_SIZE);
      const data = pattern(3, 8 * PAGE_SIZE);
      mm.write(src, data);
      const local = nicA.regMr(pdA, mm, src, 8 * PAGE_SIZE, RW) as IbMr;
      const dst = mm.mmap(8 * PAGE_SIZE);
      const odp = nic.regMr(pd, mm, dst, 8 * PAGE_SIZE, RW | IB_ACCESS_ON_DEMAND) as IbMr;
      expect(rdmaWrite(qa, local, src, odp, dst, 8 * PAGE_SIZE).status).toBe(OK);
      expect(mm.read(dst, 8 * PAGE_SIZE)).toEqual(data);
      const e = odp.mtt[2] ?? 0;
      expect(nic.dev.domain?.iovaToPhys(unsafeIova(e - (e % 4)))).toBe((mm.pteAt(dst + 2 * PAGE_SIZE)?.pfn ?? 0) * PAGE_SIZE);
      expect(mm.madvise(dst, 4 * PAGE_SIZE, MADV_DONTNEED)).toBe(0);
      expect(nic.dev.domain?.iovaToPhys(unsafeIova(e - (e % 4)))).toBeUndefined();
      expect(odp.odp?.npages).toBe(4);
      expect(rdmaRead(qa, local, src, odp, dst + 2 * PAGE_SIZE, 64).status).toBe(OK);
      expect(mm.read(src, 64)).toEqual(new Uint8Array(64));
      expect(nic.deregMr(odp)).toBe(0);
      expect(nicA.deregMr(local)).toBe(0);
      mm.exit();
      expect(sys.pagesInUse).toBe(0);
      expect(nic.dev.domain?.mappedBytes).toBe(0);
    });
  }
});
