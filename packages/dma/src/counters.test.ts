import { describe, expect, it } from "vitest";
import { PAGE_SIZE, physAddr } from "@dmasim/memory";
import { IommuCounter } from "@dmasim/iommu";
import { MemoryCounter } from "@dmasim/memory";
import { PcieP2pCounter } from "@dmasim/pcie-p2p";
import { COUNTER_CAPACITY } from "@dmasim/trace";
import { Counter, counterNames, DmaCounter } from "./counters.js";
import { DmaDirection, dmaMappingError, dmaMapPhys, dmaUnmapPhys } from "./index.js";
import { freshPages, rig } from "./test-fixtures.js";

describe("the platform's counter blocks", () => {
  it("are disjoint, fit the counter array, and Counter is exactly their union", () => {
    const blocks = [MemoryCounter, IommuCounter, PcieP2pCounter, DmaCounter];
    const indices = blocks.flatMap((b) => Object.values(b));
    expect(new Set(indices).size).toBe(indices.length);
    expect(Math.max(...indices)).toBeLessThan(COUNTER_CAPACITY);
    expect(Object.keys(Counter).sort()).toEqual(blocks.flatMap((b) => Object.keys(b)).sort());
    expect(counterNames.map((n) => Counter[n])).toEqual([...indices].sort((a, b) => a - b));
  });

  it("a kernel's platform names every counter by its block, whichever layer declared it", () => {
    const { platform, dev } = rig();
    const phys = freshPages(platform, 1);
    const addr = dmaMapPhys(dev, physAddr(phys), PAGE_SIZE, DmaDirection.FROM_DEVICE);
    expect(dmaMappingError(dev, addr)).toBe(0);
    dmaUnmapPhys(dev, addr, PAGE_SIZE, DmaDirection.FROM_DEVICE);
    const names = platform.trace.counters.names;
    for (const name of counterNames) expect(names[Counter[name]]).toBe(name);
    const moved = platform.trace.counters.snapshot().nonZero();
    expect(moved).toMatchObject({ DmaMapCalls: 1, DmaUnmapCalls: 1, PteWrites: 1, PteClears: 1 });
    for (const key of Object.keys(moved)) expect(counterNames).toContain(key);
  });
});
