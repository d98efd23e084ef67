// Fault injection at the DMA kernel's sites (fail_iova, fail_swiotlb, fail_io_pgtable): each failing
// call returns what the kernel returns for it, and every caller unwinds to a state where nothing leaked
// and nothing stays half-mapped.
import { FAIL_IO_PGTABLE } from "@dmasim/iommu";
import { Counter } from "./counters.js";
import { describe, expect, it } from "vitest";
import { dmaAllocCoherent } from "./coherent.js";
import { DMA_MAPPING_ERROR, DmaDirection, Errno } from "./constants.js";
import { DmaConfigError } from "./errors.js";
import { FAIL_IOVA } from "./iova/index.js";
import { DMA_FAULT_SITES } from "./options.js";
import { dmaMappingError, dmaMapPhys, dmaUnmapPhys } from "./mapping.js";
import { FAIL_SWIOTLB } from "./swiotlb/index.js";
import { allocBuffer, makeKernel, tryDmaRead } from "./test-fixtures.js";
import { DmaIovaState, dmaIovaDestroy, dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc } from "./two-step.js";
import { physAddr, unsafePhysAddr } from "@dmasim/memory";

const BIDI = DmaDirection.BIDIRECTIONAL;
const SZ_2M = 2 * 1024 * 1024;

describe("fault injection in the DMA kernel", () => {
  it("createDmaKernel configures the sites; unknown sites and bad attributes are refused", () => {
    const f = makeKernel({ faultInject: { seed: 3, sites: { [FAIL_IOVA]: { probability: 100, times: 1 } } } });
    expect(DMA_FAULT_SITES).toEqual([FAIL_IOVA, FAIL_SWIOTLB, FAIL_IO_PGTABLE]);
    expect(f.kernel.faultInjection.attr(FAIL_IOVA).armed).toBe(true);
    expect(() => makeKernel({ faultInject: { sites: { fail_iovaa: { probability: 1 } } } })).toThrow(DmaConfigError);
    expect(() => makeKernel({ faultInject: { sites: { [FAIL_IOVA]: { probability: -1 } } } })).toThrow(/probability/);
    expect(() => makeKernel({ faultInject: { sedd: 1 } as never })).toThrow(DmaConfigError);
  });

  it("fail_iova: dma_map_phys returns DMA_MAPPING_ERROR and holds nothing; the next map works", () => {
    const f = makeKernel();
    const buf = allocBuffer(f.platform, 8192);
    const iovad = f.dev.cookie?.iovad;
    const ranges = iovad?.liveRanges;
    f.kernel.faultInjection.attr(FAIL_IOVA).configure({ probability: 100, times: 1 });
    const failed = dmaMapPhys(f.dev, physAddr(buf.phys), buf.len, BIDI, 0);
    expect(failed).toBe(DMA_MAPPING_ERROR);
    expect(dmaMappingError(f.dev, failed)).toBe(-Errno.ENOMEM);
    expect(iovad?.liveRanges).toBe(ranges);
    expect(f.dev.domain?.mappedBytes).toBe(0);
    const st = new DmaIovaState();
    // The two-step API's allocation fails the same way once armed again.
    f.kernel.faultInjection.attr(FAIL_IOVA).configure({ times: 1 });
    expect(dmaIovaTryAlloc(f.dev, st, unsafePhysAddr(buf.phys), buf.len)).toBe(false);
    const addr = dmaMapPhys(f.dev, physAddr(buf.phys), buf.len, BIDI, 0);
    expect(dmaMappingError(f.dev, addr)).toBe(0);
    expect(f.endpoint(f.dev).dmaRead(addr, buf.len)).toEqual(buf.bytes);
    dmaUnmapPhys(f.dev, addr, buf.len, BIDI, 0);
    expect(f.kernel.debugReports()).toEqual([]);
  });

  it("fail_swiotlb: an untrusted device's unaligned map fails with no slot held", () => {
    const f = makeKernel();
    const buf = allocBuffer(f.platform, 100, { offset: 24 });
    f.kernel.faultInjection.attr(FAIL_SWIOTLB).configure({ probability: 100, times: 1 });
    expect(dmaMapPhys(f.untrusted, physAddr(buf.phys), buf.len, BIDI, 0)).toBe(DMA_MAPPING_ERROR);
    expect(f.kernel.swiotlb?.stats.used).toBe(0);
    expect(f.untrusted.domain?.mappedBytes).toBe(0);
    // Forced bouncing on dma-direct fails the same way.
    const g = makeKernel({ iommuMode: "off", swiotlb: { force: true } });
    const b = allocBuffer(g.platform, 4096);
    g.kernel.faultInjection.attr(FAIL_SWIOTLB).configure({ probability: 100, times: 1 });
    expect(dmaMapPhys(g.dev, physAddr(b.phys), b.len, BIDI, 0)).toBe(DMA_MAPPING_ERROR);
    expect(g.kernel.swiotlb?.stats.used).toBe(0);
  });

  it("fail_io_pgtable: dma_map_phys frees its IOVA and its bounce slot, and the device reaches nothing", () => {
    const f = makeKernel();
    // An unaligned buffer of an untrusted device bounces, then its map needs a new leaf table.
    const buf = allocBuffer(f.platform, 3000, { offset: 8 });
    f.kernel.faultInjection.attr(FAIL_IO_PGTABLE).configure({ probability: 100, times: 1 });
    const { result, moved } = f.delta(() => dmaMapPhys(f.untrusted, physAddr(buf.phys), buf.len, BIDI, 0), Counter.IovaFreeCache, Counter.IovaFreeTree);
    expect(dmaMappingError(f.untrusted, result)).not.toBe(0);
    expect(f.kernel.faultInjection.attr(FAIL_IO_PGTABLE).injected).toBe(1);
    // The IOVA went back to the allocator (its range cache).
    expect((moved[0] ?? 0) + (moved[1] ?? 0)).toBe(1);
    expect(f.kernel.swiotlb?.stats.used).toBe(0);
    expect(f.untrusted.domain?.mappedBytes).toBe(0);
    expect(f.kernel.debugReports()).toEqual([]);
  });

  it("fail_io_pgtable: a two-step link crossing into a new leaf table returns -ENOMEM and maps nothing of it", () => {
    const f = makeKernel();
    const buf = allocBuffer(f.platform, 4 * SZ_2M);
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(f.dev, st, unsafePhysAddr(buf.phys), buf.len)).toBe(true);
    // The first 4 KiB link builds the path to its leaf table; then a link over the next 2 MiB boundary fails.
    expect(dmaIovaLink(f.dev, st, unsafePhysAddr(buf.phys), 0, 4096, BIDI, 0)).toBe(0);
    const linked = f.dev.domain?.mappedBytes;
    f.kernel.faultInjection.attr(FAIL_IO_PGTABLE).configure({ probability: 100, times: 1 });
    expect(dmaIovaLink(f.dev, st, unsafePhysAddr(buf.phys + 4096), 4096, 3 * SZ_2M, BIDI, 0)).toBe(-Errno.ENOMEM);
    expect(f.dev.domain?.mappedBytes).toBe(linked);
    expect(dmaIovaSync(f.dev, st, 0, 4096)).toBe(0);
    expect(tryDmaRead(f.endpoint(f.dev), st.addr + 4096, 16)).toBeInstanceOf(Error);
    expect(f.endpoint(f.dev).dmaRead(st.addr, 4096)).toEqual(buf.bytes.subarray(0, 4096));
    dmaIovaDestroy(f.dev, st, 4096, BIDI, 0);
    expect(f.dev.domain?.mappedBytes).toBe(0);
    expect(f.kernel.unbind(f.dev).leakedIovaStates).toBe(0);
    expect(f.kernel.debugReports()).toEqual([]);
  });

  it("fail_io_pgtable and fail_iova: dma_alloc_coherent fails cleanly", () => {
    const f = makeKernel();
    const free = f.platform.memory.allocator.freeBytes;
    for (const site of [FAIL_IOVA, FAIL_IO_PGTABLE]) {
      f.kernel.faultInjection.attr(site).configure({ probability: 100, times: 1 });
      expect(dmaAllocCoherent(f.dev, 16 * 4096)).toBeUndefined();
      expect(f.platform.memory.allocator.freeBytes).toBe(free);
      expect(f.dev.domain?.mappedBytes).toBe(0);
    }
  });
});
