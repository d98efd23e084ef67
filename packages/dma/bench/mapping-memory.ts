// Host memory per live dma_map_phys mapping of one 4 KiB page: 100 000 mappings are made on one device
// (strict iommu-dma, 64-bit mask, so every IOVA comes from the tree), and the heap (V8 objects) and the
// typed arrays' backing stores (ArrayBuffers) are measured after full collections before and after.
// What it counts is everything the model keeps for them: the IOVA tree, the page table, dma-debug's
// entries and cacheline runs. Run from the repository root:
//
//   node --expose-gc --import ./scripts/bench-loader/register.mjs packages/dma/bench/mapping-memory.ts
import { GiB, unsafePhysAddr } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import { createDmaKernel, DMA_BIT_MASK, DmaDirection, dmaMapPhys, dmaMappingError, dmaSetMaskAndCoherent, dmaUnmapPhys, unsafeDmaAddr } from "@dmasim/dma";
import type { DebugMode } from "@dmasim/dma";

const N = 100_000;
const maybeGc = (globalThis as { gc?: () => void }).gc;
if (maybeGc === undefined) throw new Error("run with node --expose-gc");
const gc: () => void = maybeGc;

function perMapping(debug: DebugMode, dir: DmaDirection): { heap: number; buffers: number } {
  const bdf = "0000:01:00.0";
  const platform = createPlatform({ memory: { ramBytes: 4 * GiB }, iommu: {}, endpoints: [{ bdf }] });
  const kernel = createDmaKernel(platform, { iommuMode: "strict", debug });
  const dev = kernel.device(bdf);
  dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64));
  const base = platform.memory.allocator.allocPages(N);
  // Warm-up: whatever the first mappings create once (caches, the first table pages) is not per mapping.
  for (let i = 0; i < 1000; i++) {
    const a = dmaMapPhys(dev, unsafePhysAddr(base + i * 4096), 4096, dir, 0);
    dmaMappingError(dev, a);
    dmaUnmapPhys(dev, unsafeDmaAddr(a), 4096, dir, 0);
  }
  const addrs = new Float64Array(N);
  gc();
  gc();
  const before = process.memoryUsage();
  for (let i = 0; i < N; i++) {
    const a = dmaMapPhys(dev, unsafePhysAddr(base + i * 4096), 4096, dir, 0);
    dmaMappingError(dev, a);
    addrs[i] = a;
  }
  gc();
  gc();
  const after = process.memoryUsage();
  // Unmapped again, so the kernel is reachable (and measured) up to here.
  for (let i = 0; i < N; i++) dmaUnmapPhys(dev, unsafeDmaAddr(addrs[i] ?? 0), 4096, dir, 0);
  return { heap: (after.heapUsed - before.heapUsed) / N, buffers: (after.arrayBuffers - before.arrayBuffers) / N };
}

for (const debug of ["off", "throw"] as const) {
  for (const dir of [DmaDirection.TO_DEVICE, DmaDirection.FROM_DEVICE]) {
    const m = perMapping(debug, dir);
    const name = dir === DmaDirection.TO_DEVICE ? "TO_DEVICE" : "FROM_DEVICE";
    console.log(`dma-debug ${debug.padEnd(5)} ${name.padEnd(11)}: ${(m.heap + m.buffers).toFixed(0).padStart(4)} B per mapping (heap ${m.heap.toFixed(0)}, typed arrays ${m.buffers.toFixed(0)})`);
  }
}
