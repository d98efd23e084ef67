// The README's example, run as written (the ```ts block is read from README.md), so it cannot rot.
import * as memoryModule from "@dmasim/memory";
import * as traceModule from "@dmasim/trace";
import { Counter } from "./counters.js";
import type { Trace } from "@dmasim/trace";
import { expect, it } from "vitest";
import { runReadmeBlock } from "../../../scripts/readme-example.js";
import * as iommuModule from "./index.js";
import type { Iommu, IommuDomain, UnmapResult } from "./index.js";
import { SZ_4K } from "./index.js";

it("README example runs and shows the lazy-invalidation window", () => {
  const r = runReadmeBlock(new URL("../README.md", import.meta.url), { "@dmasim/trace": traceModule, "@dmasim/memory": memoryModule, "@dmasim/iommu": iommuModule });
  const trace = r.trace as Trace;
  const iommu = r.iommu as Iommu;
  const dom = r.dom as IommuDomain;
  const { unmapped, freed } = r as unknown as UnmapResult;

  expect(unmapped).toBe(4 * SZ_4K);
  // The kernel's freeing rule: 16 KiB covers no table's whole span, so the tables stay.
  expect(freed.count).toBe(0);
  expect(dom.ptPages).toBe(4);
  expect(trace.counters.get(Counter.IotlbStaleHits)).toBe(1);
  expect(iommu.faults()).toEqual([{ t: 0, device: "0000:01:00.0", iova: 0x1_0040, access: "read", reason: "not-mapped" }]);
  expect(trace.counters.snapshot().nonZero()).toEqual({
    IommuMapCalls: 1,
    IommuUnmapCalls: 1,
    PteWrites: 4,
    PteClears: 4,
    PtPagesAllocated: 3,
    PtWalks: 2,
    PtWalkLevels: 8, // 4 per walk: after unmap the tables are still there, only the leaf is empty
    IotlbHits: 1,
    IotlbMisses: 2,
    IotlbStaleHits: 1,
    IotlbInvalRange: 1,
    IotlbSyncMap: 1,
    IommuFaults: 1,
  });
});
