import type { PhysAddr } from "@dmasim/memory";
import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import { Counter } from "./counters.js";
import { apiBegin, apiEnd, checkDevice } from "./api-trace.js";
import { DMA_MAPPING_ERROR, DmaDirection } from "./constants.js";
import type { DmaAddr } from "./constants.js";
import { kCoherentAllocs, type DmaDevice } from "./device.js";
import { physToDma } from "./direct.js";
import { dmaInfoToProt, iommuDmaMapRange, iommuDmaUnmapRange } from "./iommu-dma.js";
import { checkAttrs, checkAddr, checkSize } from "./validate.js";
import { hex } from "@dmasim/trace";
import { DmaInputError } from "./errors.js";

/** What dma_alloc_coherent hands back: the CPU's view (a physical address here) and the device's. */
export interface DmaCoherentBuffer {
  /** Where the CPU reaches the buffer (a physical address; the model has no kernel virtual addresses). */
  readonly cpuAddr: PhysAddr;
  /** The address the device uses: an IOVA with iommu-dma, a bus address on dma-direct. */
  readonly dmaHandle: DmaAddr;
  /** Bytes asked for (the allocation itself is whole pages). */
  readonly size: number;
}

/**
 * dma_alloc_coherent: zeroed memory both the CPU and the device can use without syncs. On dma-direct
 * the pages come from below the coherent mask; with iommu-dma they are mapped at an IOVA under it. For a
 * non-coherent device the CPU mapping is uncached (CPU accesses bypass the cache model); in a
 * confidential guest the pages are shared (decrypted). Returns undefined when memory or IOVA space ran out.
 */
export function dmaAllocCoherent(dev: DmaDevice, size: number, attrs = 0): DmaCoherentBuffer | undefined {
  const fn = "dma_alloc_coherent";
  checkDevice(fn, dev);
  checkSize(fn, "size", size);
  checkAttrs(fn, attrs);
  if (size === 0) throw new DmaInputError(fn, "size", size, "a size > 0");
  const kernel = dev.kernel;
  const pages = Math.ceil(size / PAGE_SIZE);
  apiBegin(dev, fn);
  let phys: PhysAddr;
  try {
    // dma-direct picks GFP_DMA/GFP_DMA32 from the coherent mask; model that as an upper bound.
    const below = dev.ops === "iommu" ? undefined : dev.coherentDmaMask - dev.busOffset + 1;
    phys = kernel.memory.allocator.allocPages(pages, below === undefined || below > Number.MAX_SAFE_INTEGER - 1 ? {} : { below });
  } catch {
    apiEnd(dev, fn, -1);
    return undefined;
  }
  kernel.memory.fill(phys, pages * PAGE_SIZE, 0);
  if (kernel.memory.confidential) kernel.memory.setMemoryDecrypted(phys, pages);
  if (!dev.coherent) kernel.archDmaSetUncached(phys, pages * PAGE_SIZE);
  let handle: DmaAddr;
  if (dev.ops === "iommu") {
    handle = iommuDmaMapRange(dev, phys, size, dmaInfoToProt(DmaDirection.BIDIRECTIONAL, dev.coherent, attrs), dev.coherentDmaMask);
    if (handle === DMA_MAPPING_ERROR) {
      releasePages(dev, phys, pages);
      apiEnd(dev, fn, -1);
      return undefined;
    }
  } else {
    handle = physToDma(dev, phys);
  }
  kernel.trace.counters.add(Counter.DmaMapCalls);
  dev[kCoherentAllocs].set(handle, { phys, size });
  kernel.debug.add({ type: "coherent", device: dev.bdf, dmaAddr: handle, size, phys, dir: DmaDirection.BIDIRECTIONAL, sgCount: 0, sgMappedEnts: 0 }, attrs, true);
  apiEnd(dev, fn, handle);
  return { cpuAddr: phys, dmaHandle: handle, size };
}

/** dma_free_coherent: size, CPU address and handle must be those the allocation returned. */
export function dmaFreeCoherent(dev: DmaDevice, size: number, cpuAddr: PhysAddr, dmaHandle: DmaAddr, attrs = 0): void {
  const fn = "dma_free_coherent";
  checkDevice(fn, dev);
  checkSize(fn, "size", size);
  checkAddr(fn, "cpuAddr", cpuAddr);
  checkAddr(fn, "dmaHandle", dmaHandle);
  checkAttrs(fn, attrs);
  const kernel = dev.kernel;
  const entry = kernel.debug.unmap(dev.bdf, { type: "coherent", dmaAddr: dmaHandle, size, dir: DmaDirection.BIDIRECTIONAL, phys: cpuAddr });
  if (kernel.debug.enabled && entry === undefined) return;
  const live = dev[kCoherentAllocs].get(dmaHandle);
  if (live === undefined) {
    // No allocation at this handle (a double free, or a handle never returned), and dma-debug is off, so
    // nothing above reported it. The kernel would go on and unmap nothing (WARN_ON(unmapped != size) in
    // __iommu_dma_unmap) and free the IOVA and the pages a second time; the model warns and stops there,
    // so an IOVA or a page is never handed out twice.
    kernel.log(dev, `WARNING: dma_free_coherent: no coherent allocation at DMA handle ${hex(dmaHandle)} (size ${size}): double free or bogus handle; nothing freed`);
    return;
  }
  dev[kCoherentAllocs].delete(dmaHandle);
  // With dma-debug on, a wrong size or CPU address has been reported by now ("collect" carries on). The
  // buffer that goes back is then the one the handle names, as dma-direct finds the pages from the
  // handle (dma_direct_free → dma_direct_to_page in kernel/dma/direct.c), so the model never frees
  // pages it did not hand out.
  const freePhys = live.phys;
  const freeSize = live.size;
  apiBegin(dev, fn);
  kernel.trace.counters.add(Counter.DmaUnmapCalls);
  if (dev.ops === "iommu") iommuDmaUnmapRange(dev, dmaHandle, freeSize, true);
  releasePages(dev, freePhys, Math.ceil(freeSize / PAGE_SIZE));
  apiEnd(dev, fn, 0);
}

function releasePages(dev: DmaDevice, phys: number, pages: number): void {
  const kernel = dev.kernel;
  kernel.archDmaClearUncached(phys);
  if (kernel.memory.confidential) kernel.memory.setMemoryEncrypted(unsafePhysAddr(phys), pages);
  kernel.memory.allocator.freePages(unsafePhysAddr(phys), pages);
}
