import { DmaIovaState, dmaUnmapPhys, type DmaAddr } from "@dmasim/dma";
import type { IommuMode } from "@dmasim/dma";
import { PAGE_SIZE } from "@dmasim/memory";
import { bench, describe } from "vitest";
import { ReqOp } from "./bio.js";
import { BlkDmaIter, blkRqDmaMapIterNext, blkRqDmaMapIterStart, blkRqDmaUnmap } from "./dma-iter.js";
import { queueLimits } from "./limits.js";
import { Request, rqDmaDir } from "./request.js";
import { allocPages, bioOf, makeFixture } from "./test-fixtures.js";

// Map + unmap of one request through the block DMA iterator, dma-debug off (the hot path as a driver
// runs it). Requests are built once; the bench measures the mapping alone.
function setup(mode: IommuMode, ranges: (base: number) => (readonly [number, number])[]) {
  const f = makeFixture({ iommuMode: mode, debug: "off" });
  const base = allocPages(f, 64, 1);
  const rq = Request.fromBios(queueLimits(), [bioOf(f, ReqOp.WRITE, 0, ranges(base))]);
  const state = new DmaIovaState();
  const iter = new BlkDmaIter();
  const addrs = new Float64Array(64);
  const lens = new Float64Array(64);
  return () => {
    let n = 0;
    if (!blkRqDmaMapIterStart(rq, f.dev, state, iter)) throw new Error("map failed");
    do {
      addrs[n] = iter.addr;
      lens[n++] = iter.len;
    } while (blkRqDmaMapIterNext(rq, f.dev, state, iter));
    if (!blkRqDmaUnmap(rq, f.dev, state, rq.dataLen, iter.p2pdma.map)) {
      for (let i = 0; i < n; i++) dmaUnmapPhys(f.dev, (addrs[i] ?? 0) as DmaAddr, lens[i] ?? 0, rqDmaDir(rq));
    }
  };
}

const one4k = (b: number) => [[b, PAGE_SIZE] as const];
const eightPages = (b: number) => Array.from({ length: 8 }, (_, i) => [b + i * 2 * PAGE_SIZE, PAGE_SIZE] as const);
const eightGaps = (b: number) => Array.from({ length: 8 }, (_, i) => [b + i * 2 * PAGE_SIZE + 512, 1024] as const);

describe("blk_rq_dma_map_iter + blk_rq_dma_unmap, one request", () => {
  bench("4 KiB, strict IOVA", setup("strict", one4k));
  bench("4 KiB, lazy IOVA", setup("lazy", one4k));
  bench("4 KiB, dma-direct", setup("off", one4k));
  bench("8 × 4 KiB scattered, strict: one IOVA", setup("strict", eightPages));
  bench("8 × 1 KiB with gaps, strict: 8 × dma_map_phys", setup("strict", eightGaps));
});
