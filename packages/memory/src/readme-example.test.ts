import * as traceModule from "@dmasim/trace";
import { Counter } from "./counters.js";
import type { Trace } from "@dmasim/trace";
import { describe, expect, it } from "vitest";
import { runReadmeBlock } from "../../../scripts/readme-example.js";
import * as memoryModule from "./index.js";
import { PageFlag } from "./index.js";
import type { PhysicalMemory } from "./index.js";

// The example of README.md, read from the README and run as written, so it cannot rot.
describe("README example", () => {
  it("runs as documented", () => {
    const r = runReadmeBlock(new URL("../README.md", import.meta.url), { "@dmasim/trace": traceModule, "@dmasim/memory": memoryModule });
    const trace = r.trace as Trace;
    const mem = r.mem as PhysicalMemory;

    expect([...(r.back as Uint8Array)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(r.flags).toBe(PageFlag.ALLOCATED);
    expect(r.p2p).toBe(PageFlag.P2PDMA);
    expect(r.fault).toBe("read: physical address 0x80000000 is in a hole (no RAM or MMIO region covers it)");
    expect(r.counters).toEqual({ MemReadBytes: 8, MemWriteBytes: 8, MemPagesMaterialised: 2, PageAllocs: 16384, PageDescLookups: 2 });
    expect(mem.materialisedPages).toBe(2);
    expect(trace.counters.get(Counter.PageFrees)).toBe(0);
  });
});
