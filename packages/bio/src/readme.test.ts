import * as dmaModule from "@dmasim/dma";
import type { DmaIovaState } from "@dmasim/dma";
import * as memoryModule from "@dmasim/memory";
import * as p2pModule from "@dmasim/pcie-p2p";
import type { CounterValues } from "@dmasim/trace";
import { expect, it } from "vitest";
import { runReadmeBlock } from "../../../scripts/readme-example.js";
import * as bioModule from "./index.js";
import { blkRqDmaMapCoalesce } from "./index.js";
import type { BlkDmaIter } from "./index.js";

// The README example, read from the README and run as written; the assertions check what its comments say.
it("README example", () => {
  const r = runReadmeBlock(new URL("../README.md", import.meta.url), {
    "@dmasim/dma": dmaModule,
    "@dmasim/memory": memoryModule,
    "@dmasim/pcie-p2p": p2pModule,
    "@dmasim/bio": bioModule,
  });
  const iter = r.iter as BlkDmaIter;
  const segments = r.segments as [number, number][];
  expect(iter.status).toBe(0);
  expect(segments).toEqual([[segments[0]![0], 12288]]);
  expect(r.coalesced).toBe(true);
  expect((r.seen as Uint8Array).every((b) => b === 1)).toBe(true);
  expect(blkRqDmaMapCoalesce(r.state as DmaIovaState)).toBe(false); // zeroed by the unmap
  const k = r.counters as CounterValues;
  expect([k.DmaIovaTryAllocs, k.DmaIovaLinks, k.DmaIovaSyncs, k.DmaIovaDestroys, k.PteWrites]).toEqual([1, 3, 1, 1, 4]);
  expect(k.DmaBookkeepingBytesAllocated).toBe(104);
  expect(k.DmaBookkeepingBytesFreed).toBe(104);
});
