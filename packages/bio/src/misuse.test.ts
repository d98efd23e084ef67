import { DmaIovaState } from "@dmasim/dma";
import type { DmaDevice } from "@dmasim/dma";
import { PAGE_SIZE } from "@dmasim/memory";
import { PciP2pdmaMapType } from "@dmasim/pcie-p2p";
import { describe, expect, it } from "vitest";
import { BlkDmaIter, blkRqDmaMapIterNext, blkRqDmaMapIterStart, blkRqDmaUnmap } from "./dma-iter.js";
import { BioError } from "./errors.js";
import { queueLimits } from "./limits.js";
import { Request } from "./request.js";
import { NVME, WRITE, allocPages, bioOf, makeFixture } from "./test-fixtures.js";

// A device that is missing, foreign, not a device or unbound is bad input to the block layer's DMA
// iterator: a BioError naming dma_dev before anything is charged or mapped.

describe("blk_rq_dma_map_iter_* and blk_rq_dma_unmap with a bad dev", () => {
  it("refuse it with a BioError and change no counter", () => {
    const f = makeFixture();
    const a = allocPages(f, 2, 1);
    const rq = Request.fromBios(queueLimits(), [bioOf(f, WRITE, 0, [[a, 2 * PAGE_SIZE]])]);
    const other = makeFixture();
    other.kernel.unbind(other.dev);
    const bad: unknown[] = [undefined, null, NVME, f.platform.endpoint(NVME), { bound: true, bdf: NVME, kernel: f.kernel }, other.dev];
    const calls: readonly ((dev: DmaDevice) => unknown)[] = [
      (d) => blkRqDmaMapIterStart(rq, d, new DmaIovaState(), new BlkDmaIter()),
      (d) => blkRqDmaMapIterNext(rq, d, new DmaIovaState(), new BlkDmaIter()),
      (d) => blkRqDmaUnmap(rq, d, new DmaIovaState(), 0, PciP2pdmaMapType.NONE),
    ];
    for (const call of calls) {
      for (const dev of bad) {
        const before = f.platform.trace.counters.snapshot();
        let err: unknown;
        try {
          call(dev as DmaDevice);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(BioError);
        expect((err as BioError).message).toMatch(/dma_dev = .* is invalid/);
        expect(f.platform.trace.counters.snapshot().diff(before).nonZero()).toEqual({});
        expect(rq.dmaBookkeeping).toBe(0);
      }
    }
  });
});
