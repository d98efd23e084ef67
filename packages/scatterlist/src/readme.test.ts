import * as dmaModule from "@dmasim/dma";
import * as memoryModule from "@dmasim/memory";
import * as p2pModule from "@dmasim/pcie-p2p";
import type { Platform } from "@dmasim/pcie-p2p";
import type { CounterValues } from "@dmasim/trace";
import { describe, expect, it } from "vitest";
import { runReadmeBlock } from "../../../scripts/readme-example.js";
import * as sgModule from "./index.js";
import { physAddr } from "@dmasim/memory";

// The README's example, read from README.md and run as written.
describe("README example", () => {
  it("maps a list of pages for a device behind an IOMMU and reads it back through the device", () => {
    const r = runReadmeBlock(new URL("../README.md", import.meta.url), {
      "@dmasim/dma": dmaModule,
      "@dmasim/memory": memoryModule,
      "@dmasim/pcie-p2p": p2pModule,
      "@dmasim/scatterlist": sgModule,
    });
    // sg_alloc_table_from_pages merged the adjacent pair: 3 CPU entries.
    expect(r.entries).toBe(3);
    expect(r.ret).toBe(0); // two-step by default
    // The IOMMU made the three entries one contiguous DMA segment of 16 KiB.
    expect(r.segments).toBe(1);
    const platform = r.platform as Platform;
    expect(r.seen).toEqual(platform.memory.read(physAddr((r.a as number) * memoryModule.PAGE_SIZE), 5));
    const counters = r.counters as CounterValues;
    expect([counters.DmaIovaTryAllocs, counters.DmaIovaLinks, counters.IotlbSyncMap]).toEqual([1, 3, 1]);
    expect(platform.trace.counters.snapshot().nonZero()).toMatchObject({ DmaIovaDestroys: 1 });
  });
});
