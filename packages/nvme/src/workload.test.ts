import { Counter } from "@dmasim/dma";
import { describe, expect, it } from "vitest";
import { createNvmeSystem } from "./system.js";
import { WorkloadError } from "./errors.js";
import { prefillNamespace, runWorkload } from "./workload.js";

describe("workload", () => {
  it("4 KiB random reads at QD 8 verify every byte", () => {
    const sys = createNvmeSystem({ queueDepth: 8, namespaceBytes: 4 * 1024 * 1024 });
    const r = runWorkload(sys, { ops: 200, seed: 7 });
    expect(r.ops).toBe(200);
    expect(r.reads).toBe(200);
    expect(r.verifiedBytes).toBe(200 * 4096);
    expect(r.mismatches).toBe(0);
    // One contiguous segment each: nvme_pci_setup_data_simple maps it with dma_map_phys, no IOVA state.
    expect([r.costs.counters.DmaMapCalls, r.costs.counters.DmaUnmapCalls, r.costs.counters.DmaIovaTryAllocs]).toEqual([200, 200, undefined]);
    expect(sys.platform.trace.counters.get(Counter.IommuFaults)).toBe(0);
    expect(sys.driver.dev.domain!.mappedBytes).toBeGreaterThan(0); // queues and pools stay mapped
  });
});

describe("verification", () => {
  it("catches a corrupted block on the medium", () => {
    const sys = createNvmeSystem({ queueDepth: 4, namespaceBytes: 64 * 1024 });
    const gen = prefillNamespace(sys);
    sys.controller.namespace.write(5 * 4096 + 100, new Uint8Array([0xff ^ (sys.controller.namespace.read(5 * 4096 + 100, 1)[0] ?? 0)]));
    expect(() => runWorkload(sys, { ops: 200, seed: 3 }, gen)).toThrow(WorkloadError);
  });

  it("catches a read that never reached the host buffer", () => {
    const sys = createNvmeSystem({ queueDepth: 4, namespaceBytes: 64 * 1024 });
    // A controller that drops the data of reads: completes them without touching host memory.
    const original = sys.controller.endpoint.dmaWrite.bind(sys.controller.endpoint);
    sys.controller.endpoint.dmaWrite = (addr, bytes) => {
      if (bytes.length === 16) original(addr, bytes); // completions still arrive
    };
    expect(() => runWorkload(sys, { ops: 8, seed: 3 })).toThrow(/did not verify/);
  });
});
