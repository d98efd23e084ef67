import { bench, describe } from "vitest";
import { GiB, PAGE_SIZE, type PhysAddr, unsafePhysAddr } from "@dmasim/memory";
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
import { TRUSTED_BDF } from "./test-fixtures.js";

// The targets: two-step alloc + 256 links + one sync + destroy <= 5 µs per batch;
// dmaMapPhys + dmaUnmapPhys of 4 KiB with a range-cache hit <= 500 ns per pair. dma-debug is off in
// the headline cases (as in a production kernel) and on in one case each, to show what it costs.

// The loops read the API through module-local bindings, as a driver's compiled code calls the kernel's
// functions directly. Benchmarks run as native ES modules (see the root README), where an imported
// binding is as cheap; under the test runner's module loader each use would be a getter call.
const link = dmaIovaLink;
const tryAlloc = dmaIovaTryAlloc;
const sync = dmaIovaSync;
const destroy = dmaIovaDestroy;
const mapPhys = dmaMapPhys;
const mappingError = dmaMappingError;
const unmapPhys = dmaUnmapPhys;
const PAGE = PAGE_SIZE;
const TO_DEVICE = DmaDirection.TO_DEVICE;
const FROM_DEVICE = DmaDirection.FROM_DEVICE;

// A second of warm-up before each measurement: the optimising compiler works in the background, and
// the default 100 ms leaves some of the measured batches to code that is not yet optimised.
const STEADY = { warmupTime: 1000, time: 1000 };

function setup(mode: IommuMode, debug: DebugMode) {
  const platform = createPlatform({ memory: { ramBytes: 4 * GiB }, iommu: {}, endpoints: [{ bdf: TRUSTED_BDF }] });
  const kernel = createDmaKernel(platform, { iommuMode: mode, debug });
  const dev = kernel.device(TRUSTED_BDF);
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
    const len = 256 * PAGE;
    bench("alloc + link 256 × 4 KiB + one sync + destroy", () => {
      tryAlloc(dev, state, unsafePhysAddr(pages[0] ?? 0), len);
      for (let i = 0; i < 256; i++) link(dev, state, (pages[i] ?? 0) as PhysAddr, i * PAGE, PAGE, TO_DEVICE, 0);
      sync(dev, state, 0, len);
      destroy(dev, state, len, TO_DEVICE, 0);
    }, STEADY);
  });

  describe(`classic, ${mode}, dma-debug ${debug}`, () => {
    const { dev, pages } = setup(mode, debug);
    const phys = pages[0] ?? 0;
    bench("dmaMapPhys + dmaUnmapPhys 4 KiB (range-cache hit)", () => {
      const addr = mapPhys(dev, phys as PhysAddr, PAGE, TO_DEVICE, 0);
      mappingError(dev, addr);
      unmapPhys(dev, addr, PAGE, TO_DEVICE, 0);
    });
  });
}

// dma-debug's cacheline bookkeeping: a DMA_FROM_DEVICE mapping is tracked (DMA_TO_DEVICE ones are not),
// with 256 other live mappings in the table, on both paths.
for (const mode of ["strict", "off"] as const) {
  describe(`classic, ${mode}, dma-debug throw, cachelines tracked`, () => {
    const { dev, pages } = setup(mode, "throw");
    const live = pages.slice(1).map((p) => {
      const addr = mapPhys(dev, p as PhysAddr, PAGE, FROM_DEVICE, 0);
      mappingError(dev, addr);
      return addr;
    });
    const phys = pages[0] ?? 0;
    bench(`dmaMapPhys + dmaUnmapPhys 4 KiB FROM_DEVICE, ${live.length} live mappings`, () => {
      const addr = mapPhys(dev, phys as PhysAddr, PAGE, FROM_DEVICE, 0);
      mappingError(dev, addr);
      unmapPhys(dev, addr, PAGE, FROM_DEVICE, 0);
    }, STEADY);
  });
}
