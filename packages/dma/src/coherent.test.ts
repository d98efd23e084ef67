import { describe, expect, it } from "vitest";
import { PcieAccessError } from "@dmasim/pcie-p2p";
import { PAGE_SIZE, PageFlag, physAddr, unsafePhysAddr } from "@dmasim/memory";
import { Counter } from "./counters.js";
import {
  DMA_BIT_MASK,
  DmaDebugError,
  DmaDirection,
  DmaInputError,
  dmaAllocCoherent,
  dmaFreeCoherent,
  dmaMapPhys,
  dmaMappingError,
  dmaSetCoherentMask,
  dmaUnmapPhys,
  unsafeDmaAddr,
} from "./index.js";
import { DEV, freshPages, moved, pattern, rig } from "./test-fixtures.js";
import { iova } from "@dmasim/iommu";
import { dmaAddr } from "./constants.js";

describe("dmaAllocCoherent", () => {
  it("returns zeroed memory even when the pages held old data", () => {
    const { platform, dev } = rig();
    const old = freshPages(platform, 4);
    platform.memory.fill(physAddr(old), 4 * PAGE_SIZE, 0xa5);
    platform.memory.allocator.freePages(unsafePhysAddr(old), 4);
    const buf = dmaAllocCoherent(dev, 4 * PAGE_SIZE)!;
    expect(buf.cpuAddr).toBe(old); // lowest first fit hands the same pages back
    expect(platform.memory.read(buf.cpuAddr, 4 * PAGE_SIZE)).toEqual(new Uint8Array(4 * PAGE_SIZE));
    expect(buf.size).toBe(4 * PAGE_SIZE);
  });

  it("with iommu-dma maps the pages at an IOVA under the coherent mask, synced once", () => {
    const { platform, dev, ep } = rig();
    expect(dmaSetCoherentMask(dev, DMA_BIT_MASK(24))).toBe(0);
    const m = moved(platform, () => dmaAllocCoherent(dev, 3 * PAGE_SIZE + 100)!);
    const buf = m.result;
    expect(buf.dmaHandle + buf.size - 1).toBeLessThanOrEqual(DMA_BIT_MASK(24));
    expect(m.get(Counter.IotlbSyncMap)).toBe(1);
    expect(m.get(Counter.PteWrites)).toBe(4);
    for (let i = 0; i < 4; i++) expect(dev.domain!.iovaToPhys(iova(buf.dmaHandle + i * PAGE_SIZE))).toBe(buf.cpuAddr + i * PAGE_SIZE);
    // No sync in either direction: a coherent device and the CPU share the buffer as is.
    platform.memory.write(physAddr(buf.cpuAddr + 10), pattern(300, 1));
    expect(ep.dmaRead(unsafeDmaAddr(buf.dmaHandle + 10), 300)).toEqual(pattern(300, 1));
    ep.dmaWrite(unsafeDmaAddr(buf.dmaHandle + 2 * PAGE_SIZE), pattern(200, 2));
    expect(platform.memory.read(physAddr(buf.cpuAddr + 2 * PAGE_SIZE), 200)).toEqual(pattern(200, 2));
    dmaFreeCoherent(dev, buf.size, buf.cpuAddr, buf.dmaHandle);
  });

  it("on dma-direct takes pages below the coherent mask and hands out phys + bus offset", () => {
    const { platform, dev, ep } = rig({ kernel: { iommuMode: "off" } });
    expect(dmaSetCoherentMask(dev, DMA_BIT_MASK(30))).toBe(0);
    const buf = dmaAllocCoherent(dev, 2 * PAGE_SIZE)!;
    expect(buf.dmaHandle).toBe(buf.cpuAddr);
    expect(buf.cpuAddr + buf.size - 1).toBeLessThanOrEqual(DMA_BIT_MASK(30));
    ep.dmaWrite(buf.dmaHandle, pattern(64, 3));
    expect(platform.memory.read(buf.cpuAddr, 64)).toEqual(pattern(64, 3));
    dmaFreeCoherent(dev, buf.size, buf.cpuAddr, buf.dmaHandle);
  });

  it("returns undefined when no page under the coherent mask is free, allocating nothing", () => {
    const { platform, dev } = rig({ kernel: { iommuMode: "off" } });
    // 16 MiB cannot fit below 16 MiB once the swiotlb pool has taken its share of low memory.
    expect(dmaSetCoherentMask(dev, DMA_BIT_MASK(24))).toBe(0);
    const before = platform.memory.allocator.allocatedPages;
    expect(dmaAllocCoherent(dev, 16 * 1024 * 1024)).toBeUndefined();
    expect(platform.memory.allocator.allocatedPages).toBe(before);
    expect(dmaAllocCoherent(dev, 1024 * 1024)).toBeDefined();
    expect(platform.memory.allocator.allocatedPages).toBe(before + 256);
  });

  it("for a non-coherent device gives an uncached CPU mapping: both sides see each other without syncs", () => {
    for (const iommuMode of ["strict", "off"] as const) {
      const { platform, kernel, dev, ep } = rig({ kernel: { iommuMode, devices: { [DEV]: { coherent: false } } } });
      const buf = dmaAllocCoherent(dev, PAGE_SIZE)!;
      const m = moved(platform, () => {
        kernel.cpuWrite(buf.cpuAddr, pattern(256, 4));
        expect(ep.dmaRead(buf.dmaHandle, 256)).toEqual(pattern(256, 4));
        expect(kernel.cpuRead(unsafePhysAddr(buf.cpuAddr + 512), 64)).toEqual(new Uint8Array(64));
        ep.dmaWrite(unsafeDmaAddr(buf.dmaHandle + 512), pattern(64, 5));
        expect(kernel.cpuRead(unsafePhysAddr(buf.cpuAddr + 512), 64)).toEqual(pattern(64, 5));
      });
      expect(m.get(Counter.CacheLinesWrittenBack) + m.get(Counter.CacheLinesInvalidated)).toBe(0);
      expect(kernel.cpuCache.lines).toBe(0);
      dmaFreeCoherent(dev, buf.size, buf.cpuAddr, buf.dmaHandle);
      // Once freed, the pages are ordinary cached memory again.
      kernel.cpuWrite(buf.cpuAddr, pattern(64, 6));
      expect(platform.memory.read(buf.cpuAddr, 64)).toEqual(pattern(64, 4));
      expect(kernel.cpuRead(buf.cpuAddr, 64)).toEqual(pattern(64, 6));
    }
  });

  it("in a confidential guest the pages are shared (decrypted) while allocated, and private again after free", () => {
    const { platform, dev, ep } = rig({ kernel: { iommuMode: "off" }, confidential: true });
    const buf = dmaAllocCoherent(dev, 2 * PAGE_SIZE)!;
    const pfn = buf.cpuAddr / PAGE_SIZE;
    expect(platform.memory.pages.flags(pfn) & PageFlag.ENCRYPTED).toBe(0);
    expect(platform.memory.pages.flags(pfn + 1) & PageFlag.ENCRYPTED).toBe(0);
    // Not bounced: the device reaches the shared pages directly.
    expect(buf.dmaHandle).toBe(buf.cpuAddr);
    ep.dmaWrite(unsafeDmaAddr(buf.dmaHandle + PAGE_SIZE), pattern(128, 7));
    expect(platform.memory.read(physAddr(buf.cpuAddr + PAGE_SIZE), 128)).toEqual(pattern(128, 7));
    dmaFreeCoherent(dev, buf.size, buf.cpuAddr, buf.dmaHandle);
    expect(platform.memory.pages.flags(pfn) & PageFlag.ENCRYPTED).not.toBe(0);
    expect(() => ep.dmaRead(buf.dmaHandle, 16)).toThrow(/private memory/);
  });

  it("rejects bad input with DmaInputError, allocating nothing", () => {
    const { platform, dev } = rig();
    const before = platform.memory.allocator.allocatedPages;
    expect(() => dmaAllocCoherent(dev, 0)).toThrow(/dma_alloc_coherent: size = 0x0 is invalid: expected a size > 0/);
    expect(() => dmaAllocCoherent(dev, -5)).toThrow(DmaInputError);
    expect(() => dmaAllocCoherent(dev, 4096, 1 << 30)).toThrow(/attrs/);
    expect(platform.memory.allocator.allocatedPages).toBe(before);
    expect(dev.domain!.mappedBytes).toBe(0);
  });
});

describe("dmaFreeCoherent", () => {
  it("unmaps, invalidates and gives the pages back", () => {
    const { platform, dev, ep } = rig();
    const free = platform.memory.allocator.freeBytes;
    const buf = dmaAllocCoherent(dev, 5000)!;
    expect(platform.memory.allocator.freeBytes).toBe(free - 2 * PAGE_SIZE);
    ep.dmaRead(buf.dmaHandle, 8);
    const m = moved(platform, () => {
      dmaFreeCoherent(dev, 5000, buf.cpuAddr, buf.dmaHandle);
    });
    expect(m.get(Counter.IotlbInvalRange)).toBe(1);
    expect(platform.memory.allocator.freeBytes).toBe(free);
    expect(dev.domain!.iovaToPhys(iova(buf.dmaHandle))).toBeUndefined();
    expect(() => ep.dmaRead(buf.dmaHandle, 8)).toThrow(PcieAccessError);
  });

  for (const [what, check, call] of [
    ["a different size", "unmap-size-mismatch", (b: { cpuAddr: number; dmaHandle: number }) => [8192, b.cpuAddr, b.dmaHandle] as const],
    ["a different CPU address", "unmap-cpu-address-mismatch", (b: { cpuAddr: number; dmaHandle: number }) => [4096, b.cpuAddr + PAGE_SIZE, b.dmaHandle] as const],
    ["a handle never allocated", "unmap-not-mapped", (b: { cpuAddr: number; dmaHandle: number }) => [4096, b.cpuAddr, b.dmaHandle + 16 * PAGE_SIZE] as const],
  ] as const) {
    it(`with ${what} is ${check}; in "throw" mode the buffer stays allocated and can be freed correctly`, () => {
      const { platform, kernel, dev } = rig();
      const buf = dmaAllocCoherent(dev, 4096)!;
      const allocated = platform.memory.allocator.allocatedPages;
      const [size, cpu, handle] = call(buf);
      let err: unknown;
      try {
        dmaFreeCoherent(dev, size, physAddr(cpu), dmaAddr(handle));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DmaDebugError);
      expect((err as DmaDebugError).report.check).toBe(check);
      expect(platform.memory.allocator.allocatedPages).toBe(allocated);
      expect(dev.domain!.iovaToPhys(iova(buf.dmaHandle))).toBe(buf.cpuAddr);
      dmaFreeCoherent(dev, 4096, buf.cpuAddr, buf.dmaHandle);
      expect(platform.memory.allocator.allocatedPages).toBe(allocated - 1);
      expect(kernel.debug.entries()).toHaveLength(0);
    });
  }

  it('with a different CPU address, "collect" records the kernel wording', () => {
    const { platform, kernel, dev } = rig({ kernel: { debug: "collect" } });
    const buf = dmaAllocCoherent(dev, 4096)!;
    const allocated = platform.memory.allocator.allocatedPages;
    dmaFreeCoherent(dev, 4096, physAddr(buf.cpuAddr + PAGE_SIZE), buf.dmaHandle);
    // Carrying on like the kernel, the pages the handle names go back — not the wrong address.
    expect(platform.memory.allocator.allocatedPages).toBe(allocated - 1);
    expect(platform.memory.allocator.allocPages(1)).toBe(buf.cpuAddr);
    expect(kernel.debugReports().map((r) => r.check)).toEqual(["unmap-cpu-address-mismatch"]);
    expect(kernel.debugReports()[0]!.message).toMatch(/device driver frees DMA memory with different CPU address .*\[cpu alloc address=0x[0-9a-f]+\] \[cpu free address=0x[0-9a-f]+\]/);
  });

  it("freeing a streaming mapping as coherent, or unmapping a coherent buffer, is the wrong function", () => {
    const { platform, kernel, dev } = rig({ kernel: { debug: "collect" } });
    const phys = freshPages(platform, 1);
    const addr = dmaMapPhys(dev, physAddr(phys), 4096, DmaDirection.BIDIRECTIONAL);
    dmaMappingError(dev, addr);
    const buf = dmaAllocCoherent(dev, 4096)!;
    dmaUnmapPhys(dev, buf.dmaHandle, 4096, DmaDirection.BIDIRECTIONAL);
    expect(kernel.debugReports().map((r) => r.check)).toEqual(["unmap-wrong-function"]);
    expect(kernel.debugReports()[0]!.message).toMatch(/\[mapped as coherent\] \[unmapped as phy\]/);
    dmaFreeCoherent(dev, 4096, physAddr(phys), addr);
    expect(kernel.debugReports().map((r) => r.check)).toEqual(["unmap-wrong-function", "unmap-wrong-function"]);
    expect(kernel.debugReports()[1]!.message).toMatch(/\[mapped as phy\] \[unmapped as coherent\]/);
  });
});
