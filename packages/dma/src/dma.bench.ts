import { bench, describe } from "vitest";
import { GiB, PAGE_SIZE } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import {
  createDmaKernel,
  DmaDirection,
  DmaIovaState,
  dmaIovaDestroy,
  dmaIovaLink,
  dmaIovaSync,
  dmaIovaTryAlloc,
  dmaMapPhys,
  dmaMappingError,
  dmaUnmapPhys,
} from "./index.js";
import type { DebugMode, IommuMode } from "./index.js";

// The targets: two-step alloc + 256 links + one sync + destroy <= 5 µs per batch;
// dmaMapPhys + dmaUnmapPhys of 4 KiB with a range-cache hit <= 500 ns per pair. dma-debug is off in
// the headline cases (as in a production kernel) and on in one case each, to show what it costs.

function setup(mode: IommuMode, debug: DebugMode) {
  const platform = createPlatform({ memory: { ramBytes: 4 * GiB }, iommu: {}, endpoints: [{ bdf: "0000:01:00.0" }] });
  const kernel = createDmaKernel(platform, { iommuMode: mode, debug });
  const dev = kernel.device("0000:01:00.0");
  const pages = Array.from({ length: 256 }, () => platform.memory.allocator.allocPages(1) + 0);
  return { platform, kernel, dev, pages };
}

for (const [mode, debug] of [
  ["strict", "off"],
  ["lazy", "off"],
  ["strict", "throw"],
] as const) {
  describe(`two-step, ${mode}, dma-debug ${debug}`, () => {
    const { dev, pages } = setup(mode, debug);
    const state = new DmaIovaState();
    const len = 256 * PAGE_SIZE;
    bench("alloc + link 256 × 4 KiB + one sync + destroy", () => {
      dmaIovaTryAlloc(dev, state, pages[0] ?? 0, len);
      for (let i = 0; i < 256; i++) dmaIovaLink(dev, state, pages[i] ?? 0, i * PAGE_SIZE, PAGE_SIZE, DmaDirection.TO_DEVICE, 0);
      dmaIovaSync(dev, state, 0, len);
      dmaIovaDestroy(dev, state, len, DmaDirection.TO_DEVICE, 0);
    });
  });

  describe(`classic, ${mode}, dma-debug ${debug}`, () => {
    const { dev, pages } = setup(mode, debug);
    const phys = pages[0] ?? 0;
    bench("dmaMapPhys + dmaUnmapPhys 4 KiB (range-cache hit)", () => {
      const addr = dmaMapPhys(dev, phys, PAGE_SIZE, DmaDirection.TO_DEVICE, 0);
      dmaMappingError(dev, addr);
      dmaUnmapPhys(dev, addr, PAGE_SIZE, DmaDirection.TO_DEVICE, 0);
    });
  });
}
