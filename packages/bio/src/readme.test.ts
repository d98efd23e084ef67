import { expect, it } from "vitest";
// The README example, verbatim apart from the imports and the assertions at the end.
import { createDmaKernel, DmaIovaState, dmaUnmapPhys } from "@dmasim/dma";
import { GiB } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import { Bio, BlkDmaIter, blkRqDmaMapCoalesce, blkRqDmaMapIterNext, blkRqDmaMapIterStart, blkRqDmaUnmap, bvecAt, queueLimits, ReqOp, Request, rqDmaDir } from "./index.js";

it("README example", () => {
  const platform = createPlatform({ memory: { ramBytes: 4 * GiB }, iommu: {}, endpoints: [{ bdf: "0000:01:00.0" }] });
  const kernel = createDmaKernel(platform, { iommuMode: "strict" });
  const dev = kernel.device("0000:01:00.0");
  const mem = platform.memory;

  // A write of 12 KiB from three scattered pages, the first one entered 1 KiB in.
  const [a, b, c] = [mem.allocator.allocPages(1), mem.allocator.allocPages(2), mem.allocator.allocPages(1)];
  mem.write(a + 1024, new Uint8Array(3072).fill(1));
  const bio = new Bio(mem, {
    op: ReqOp.WRITE,
    sector: 2048,
    vecs: [bvecAt(a + 1024, 3072), bvecAt(c, 4096), bvecAt(b, 5120)],
  });
  const rq = Request.fromBio(queueLimits(), bio);

  const state = new DmaIovaState();
  const iter = new BlkDmaIter();
  const segments: [number, number][] = [];
  if (blkRqDmaMapIterStart(rq, dev, state, iter)) {
    do segments.push([iter.addr, iter.len]);
    while (blkRqDmaMapIterNext(rq, dev, state, iter));
  }
  // iter.status === BLK_STS_OK; one IOVA segment of 12288 bytes: the gaps are page-aligned
  const coalesced = blkRqDmaMapCoalesce(state); // true
  const seen = platform.endpoint("0000:01:00.0").dmaRead(segments[0]![0], 3072); // 3072 ones

  if (!blkRqDmaUnmap(rq, dev, state, rq.dataLen, iter.p2pdma.map)) {
    for (const [addr, len] of segments) dmaUnmapPhys(dev, addr, len, rqDmaDir(rq));
  }
  const counters = kernel.costs().counters; // { DmaIovaTryAllocs: 1, DmaIovaLinks: 3, DmaIovaSyncs: 1, DmaIovaDestroys: 1, PteWrites: 4, … }

  expect(iter.status).toBe(0);
  expect(segments).toEqual([[segments[0]![0], 12288]]);
  expect(coalesced).toBe(true);
  expect(seen.every((b) => b === 1)).toBe(true);
  expect(blkRqDmaMapCoalesce(state)).toBe(false); // zeroed by the unmap
  const k = counters;
  expect([k.DmaIovaTryAllocs, k.DmaIovaLinks, k.DmaIovaSyncs, k.DmaIovaDestroys, k.PteWrites]).toEqual([1, 3, 1, 1, 4]);
  expect(k.DmaBookkeepingBytesAllocated).toBe(104);
  expect(k.DmaBookkeepingBytesFreed).toBe(104);
});
