import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { GiB, MiB, PAGE_SIZE, physAddr, unsafePhysAddr } from "@dmasim/memory";
import { PcieAccessError } from "@dmasim/pcie-p2p";
import { Counter } from "./counters.js";
import {
  DMA_ATTR_MMIO,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_BIT_MASK,
  DMA_MAPPING_ERROR,
  DmaDirection,
  DmaInputError,
  Errno,
  dmaGetMask,
  dmaGetMaxSegSize,
  dmaGetMergeBoundary,
  dmaGetSegBoundary,
  dmaMapPage,
  dmaMapPhys,
  dmaMapResource,
  dmaMappingError,
  dmaNeedUnmap,
  dmaSetCoherentMask,
  dmaSetMask,
  dmaSetMaskAndCoherent,
  dmaSetMaxSegSize,
  dmaSetMinAlignMask,
  dmaSetSegBoundary,
  dmaSyncSingleForCpu,
  dmaSyncSingleForDevice,
  dmaUnmapPage,
  dmaUnmapPhys,
  dmaUnmapResource,
} from "./index.js";
import { DEV, UNTRUSTED, freshPages, moved, pattern, rig } from "./test-fixtures.js";
import { iova } from "@dmasim/iommu";
import { dmaAddr, unsafeDmaAddr } from "./constants.js";

const { BIDIRECTIONAL, TO_DEVICE, FROM_DEVICE } = DmaDirection;

function iommuCounters(get: (c: Counter) => number): number {
  return (
    get(Counter.IommuMapCalls) +
    get(Counter.IommuUnmapCalls) +
    get(Counter.PteWrites) +
    get(Counter.PteClears) +
    get(Counter.IotlbSyncMap) +
    get(Counter.IotlbInvalRange) +
    get(Counter.IotlbInvalDomain) +
    get(Counter.IovaAllocCache) +
    get(Counter.IovaAllocTree) +
    get(Counter.IovaFreeCache) +
    get(Counter.IovaFreeTree)
  );
}

describe("dmaMapPhys / dmaUnmapPhys through iommu-dma (strict)", () => {
  it("allocates one IOVA, writes one PTE per page, syncs once, and the device reads the buffer", () => {
    const { platform, dev, ep } = rig();
    const phys = freshPages(platform, 4);
    const data = pattern(4 * PAGE_SIZE);
    platform.memory.write(physAddr(phys), data);
    const m = moved(platform, () => dmaMapPhys(dev, physAddr(phys), data.length, TO_DEVICE));
    const addr = m.result;
    expect(dmaMappingError(dev, addr)).toBe(0);
    expect(m.get(Counter.IovaAllocCache) + m.get(Counter.IovaAllocTree)).toBe(1);
    expect(m.get(Counter.PteWrites)).toBe(4);
    expect(m.get(Counter.IotlbSyncMap)).toBe(1);
    expect(m.get(Counter.IotlbInvalRange)).toBe(0);
    expect(m.get(Counter.DmaMapCalls)).toBe(1);
    for (let i = 0; i < 4; i++) expect(dev.domain!.iovaToPhys(iova(addr + i * PAGE_SIZE))).toBe(phys + i * PAGE_SIZE);
    // A PCI device starts with 32-bit IOVAs, and never IOVA 0.
    expect(addr).toBeGreaterThan(0);
    expect(addr + data.length - 1).toBeLessThanOrEqual(DMA_BIT_MASK(32));
    expect(ep.dmaRead(addr, data.length)).toEqual(data);
  });

  it("keeps the offset inside the granule and maps only the pages touched", () => {
    const { platform, dev, ep } = rig();
    const phys = freshPages(platform, 2) + 0x7f0;
    const data = pattern(0x900, 3); // crosses into the second page
    platform.memory.write(physAddr(phys), data);
    const m = moved(platform, () => dmaMapPhys(dev, physAddr(phys), data.length, BIDIRECTIONAL));
    expect(m.result % PAGE_SIZE).toBe(0x7f0);
    expect(m.get(Counter.PteWrites)).toBe(2);
    expect(ep.dmaRead(m.result, data.length)).toEqual(data);
  });

  it("a strict unmap clears the PTEs and invalidates the IOTLB once, so the device faults", () => {
    const { platform, dev, ep } = rig();
    const phys = freshPages(platform, 2);
    const addr = dmaMapPhys(dev, physAddr(phys), 2 * PAGE_SIZE, BIDIRECTIONAL);
    dmaMappingError(dev, addr);
    ep.dmaRead(addr, 64); // warm the IOTLB: only the invalidation can stop the next read
    const m = moved(platform, () => {
      dmaUnmapPhys(dev, addr, 2 * PAGE_SIZE, BIDIRECTIONAL);
    });
    expect(m.get(Counter.IotlbInvalRange)).toBe(1);
    expect(m.get(Counter.PteClears)).toBeGreaterThanOrEqual(2); // leaves, plus tables that emptied
    expect(dev.domain!.mappedBytes).toBe(0);
    expect(m.get(Counter.DmaUnmapCalls)).toBe(1);
    expect(m.get(Counter.FlushQueueEntries)).toBe(0);
    expect(dev.domain!.iovaToPhys(iova(addr))).toBeUndefined();
    expect(() => ep.dmaRead(addr, 64)).toThrow(PcieAccessError);
    try {
      ep.dmaRead(addr, 64);
    } catch (e) {
      expect((e as PcieAccessError).kind).toBe("iommu-fault");
    }
  });

  it("the IOVA freed by an unmap is reused from the range cache by the next map of that size", () => {
    const { platform, dev } = rig();
    const phys = freshPages(platform, 1);
    const first = dmaMapPhys(dev, physAddr(phys), PAGE_SIZE, TO_DEVICE);
    dmaMappingError(dev, first);
    dmaUnmapPhys(dev, first, PAGE_SIZE, TO_DEVICE);
    const m = moved(platform, () => dmaMapPhys(dev, physAddr(phys + 0), PAGE_SIZE, TO_DEVICE));
    expect(m.result).toBe(first);
    expect(m.get(Counter.IovaAllocCache)).toBe(1);
    expect(m.get(Counter.IovaAllocTree)).toBe(0);
    dmaMappingError(dev, m.result);
    dmaUnmapPhys(dev, m.result, PAGE_SIZE, TO_DEVICE);
  });

  it("maps with the direction's permissions: FROM_DEVICE is write-only for the device", () => {
    const { platform, dev, ep } = rig();
    const phys = freshPages(platform, 1);
    const addr = dmaMapPhys(dev, physAddr(phys), PAGE_SIZE, FROM_DEVICE);
    dmaMappingError(dev, addr);
    ep.dmaWrite(addr, pattern(128, 9));
    expect(platform.memory.read(physAddr(phys), 128)).toEqual(pattern(128, 9));
    expect(() => ep.dmaRead(addr, 16)).toThrow(PcieAccessError);
    expect(platform.iommus[0]!.faults().at(-1)?.reason).toBe("permission");
    dmaUnmapPhys(dev, addr, PAGE_SIZE, FROM_DEVICE);
  });

  it("property: every live mapping translates to its buffer and nothing else is mapped after unmapping all", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 4095 }), fc.integer({ min: 1, max: 3 * PAGE_SIZE })), { minLength: 1, maxLength: 12 }), (bufs) => {
        const { platform, dev } = rig({ kernel: { debug: "off" } });
        const base = freshPages(platform, 64);
        const maps = bufs.map(([off, len], i) => {
          const phys = base + i * 4 * PAGE_SIZE + off;
          return { phys, len, addr: dmaMapPhys(dev, physAddr(phys), len, BIDIRECTIONAL) };
        });
        for (const m of maps) {
          expect(m.addr).not.toBe(DMA_MAPPING_ERROR);
          expect(dev.domain!.iovaToPhys(iova(m.addr))).toBe(m.phys);
          expect(dev.domain!.iovaToPhys(iova(m.addr + m.len - 1))).toBe(m.phys + m.len - 1);
        }
        for (const m of maps) dmaUnmapPhys(dev, m.addr, m.len, BIDIRECTIONAL);
        expect(dev.domain!.mappedBytes).toBe(0);
      }),
      { numRuns: 25 },
    );
  });
});

describe("an IOMMU whose new PTEs need iotlb_sync_map", () => {
  it("dmaMapPhys syncs, so the device sees the mapping at once", () => {
    const { platform, dev, ep } = rig({ spec: { iommu: { requiresSyncMap: true } } });
    expect(platform.iommus[0]!.requiresSyncMap).toBe(true);
    const phys = freshPages(platform, 1);
    platform.memory.write(physAddr(phys), pattern(64, 50));
    const m = moved(platform, () => dmaMapPhys(dev, physAddr(phys), 64, TO_DEVICE));
    expect(m.get(Counter.IotlbSyncMap)).toBe(1);
    expect(ep.dmaRead(m.result, 64)).toEqual(pattern(64, 50));
  });
});

describe("IOVA space exhaustion", () => {
  it("a full IOVA space gives DMA_MAPPING_ERROR with nothing mapped, and freeing makes room", () => {
    const { platform, dev } = rig();
    expect(dmaSetMask(dev, DMA_BIT_MASK(14))).toBe(0); // IOVA pages 1..3: page 0 is never handed out
    const phys = freshPages(platform, 1);
    const addrs = [0, 1, 2].map(() => dmaMapPhys(dev, physAddr(phys), PAGE_SIZE, TO_DEVICE));
    for (const a of addrs) expect(dmaMappingError(dev, a)).toBe(0);
    expect(new Set(addrs).size).toBe(3);
    const m = moved(platform, () => dmaMapPhys(dev, physAddr(phys), PAGE_SIZE, TO_DEVICE));
    expect(m.result).toBe(DMA_MAPPING_ERROR);
    expect(dmaMappingError(dev, m.result)).toBe(-Errno.ENOMEM);
    expect(m.get(Counter.IovaAllocFail)).toBeGreaterThanOrEqual(1);
    expect(m.get(Counter.PteWrites)).toBe(0);
    expect(dev.domain!.mappedBytes).toBe(3 * PAGE_SIZE);
    dmaUnmapPhys(dev, addrs[1]!, PAGE_SIZE, TO_DEVICE);
    const again = dmaMapPhys(dev, physAddr(phys), PAGE_SIZE, TO_DEVICE);
    expect(again).toBe(addrs[1]);
    expect(dmaMappingError(dev, again)).toBe(0);
  });
});

describe("dmaUnmapPhys in lazy mode", () => {
  it("defers the invalidation to the flush queue: a stale IOTLB entry translates until the 10 ms flush", () => {
    const { platform, dev, ep } = rig({ kernel: { iommuMode: "lazy" } });
    const phys = freshPages(platform, 1);
    platform.memory.write(physAddr(phys), pattern(64, 5));
    const addr = dmaMapPhys(dev, physAddr(phys), PAGE_SIZE, TO_DEVICE);
    dmaMappingError(dev, addr);
    expect(ep.dmaRead(addr, 64)).toEqual(pattern(64, 5));
    const m = moved(platform, () => {
      dmaUnmapPhys(dev, addr, PAGE_SIZE, TO_DEVICE);
    });
    expect(m.get(Counter.IotlbInvalRange)).toBe(0);
    expect(m.get(Counter.FlushQueueEntries)).toBe(1);
    expect(dev.domain!.iovaToPhys(iova(addr))).toBeUndefined();
    // The page table is clear but the IOTLB still holds the translation: the window lazy mode opens.
    expect(ep.dmaRead(addr, 64)).toEqual(pattern(64, 5));
    // The IOVA is not reusable yet: it sits in the flush queue.
    const other = dmaMapPhys(dev, physAddr(phys), PAGE_SIZE, TO_DEVICE);
    expect(other).not.toBe(addr);
    dmaMappingError(dev, other);
    dmaUnmapPhys(dev, other, PAGE_SIZE, TO_DEVICE);
    const f = moved(platform, () => {
      platform.trace.clock.advance(10_000_000);
    });
    expect(f.get(Counter.FlushQueueFlushes)).toBe(1);
    expect(f.get(Counter.IotlbInvalDomain) + f.get(Counter.IotlbInvalGlobal)).toBeGreaterThanOrEqual(1);
    expect(() => ep.dmaRead(addr, 64)).toThrow(PcieAccessError);
  });

  it("untrusted devices stay strict in lazy mode", () => {
    const { platform, kernel } = rig({ kernel: { iommuMode: "lazy" } });
    const dev = kernel.device(UNTRUSTED);
    expect(dev.strict).toBe(true);
    const phys = freshPages(platform, 1);
    const addr = dmaMapPhys(dev, physAddr(phys), PAGE_SIZE, TO_DEVICE);
    dmaMappingError(dev, addr);
    const m = moved(platform, () => {
      dmaUnmapPhys(dev, addr, PAGE_SIZE, TO_DEVICE);
    });
    expect(m.get(Counter.IotlbInvalRange)).toBe(1);
    expect(m.get(Counter.FlushQueueEntries)).toBe(0);
  });
});

describe("dmaMapPhys through dma-direct", () => {
  for (const iommuMode of ["off", "passthrough"] as const) {
    it(`iommuMode "${iommuMode}": the DMA address is the physical address and no IOMMU work is done`, () => {
      const { platform, dev, ep } = rig({ kernel: { iommuMode } });
      expect(dev.ops).toBe("direct");
      if (iommuMode === "passthrough") expect(dev.domain?.type).toBe("identity");
      const phys = freshPages(platform, 2);
      const data = pattern(2 * PAGE_SIZE, 2);
      platform.memory.write(physAddr(phys), data);
      const m = moved(platform, () => dmaMapPhys(dev, physAddr(phys), data.length, TO_DEVICE));
      expect(m.result).toBe(phys);
      expect(iommuCounters(m.get)).toBe(0);
      expect(m.get(Counter.SwiotlbBounceBytes)).toBe(0);
      expect(ep.dmaRead(m.result, data.length)).toEqual(data);
      dmaMappingError(dev, m.result);
      const u = moved(platform, () => {
        dmaUnmapPhys(dev, m.result, data.length, TO_DEVICE);
      });
      expect(iommuCounters(u.get)).toBe(0);
      expect(u.get(Counter.DmaUnmapCalls)).toBe(1);
    });
  }

  it("adds the device's bus offset (phys_to_dma)", () => {
    const { platform, dev } = rig({ iommu: false, kernel: { devices: { [DEV]: { busOffset: 0x1000_0000 } } } });
    const phys = freshPages(platform, 1);
    const addr = dmaMapPhys(dev, physAddr(phys), 64, TO_DEVICE);
    expect(addr).toBe(phys + 0x1000_0000);
    dmaMappingError(dev, addr);
    dmaUnmapPhys(dev, addr, 64, TO_DEVICE);
  });

  it("bounces a buffer beyond the DMA mask through swiotlb: the device reads the data from the slot", () => {
    const { platform, kernel, dev, ep } = rig({ kernel: { iommuMode: "off" } });
    const phys = 5 * GiB + 0x100;
    const data = pattern(3000, 4);
    platform.memory.write(physAddr(phys), data);
    const m = moved(platform, () => dmaMapPhys(dev, physAddr(phys), data.length, TO_DEVICE));
    const addr = m.result;
    expect(dmaMappingError(dev, addr)).toBe(0);
    expect(addr).not.toBe(phys);
    expect(addr + data.length - 1).toBeLessThanOrEqual(DMA_BIT_MASK(32));
    expect(addr).toBeGreaterThanOrEqual(kernel.swiotlb!.start);
    expect(addr).toBeLessThan(kernel.swiotlb!.end);
    expect(m.get(Counter.SwiotlbBounceBytes)).toBe(data.length);
    expect(m.get(Counter.SwiotlbSlotsAllocated)).toBe(2);
    expect(ep.dmaRead(addr, data.length)).toEqual(data);
    const u = moved(platform, () => {
      dmaUnmapPhys(dev, addr, data.length, TO_DEVICE);
    });
    // TO_DEVICE: nothing is copied back, the slots are freed.
    expect(u.get(Counter.SwiotlbBounceBytes)).toBe(0);
    expect(u.get(Counter.SwiotlbSlotsFreed)).toBe(2);
  });

  it("a FROM_DEVICE bounce copies what the device wrote back to the buffer on unmap", () => {
    const { platform, dev, ep } = rig({ kernel: { iommuMode: "off" } });
    const phys = 6 * GiB;
    const addr = dmaMapPhys(dev, physAddr(phys), 2048, FROM_DEVICE);
    expect(dmaMappingError(dev, addr)).toBe(0);
    ep.dmaWrite(addr, pattern(2048, 8));
    expect(platform.memory.read(physAddr(phys), 2048)).toEqual(new Uint8Array(2048));
    const u = moved(platform, () => {
      dmaUnmapPhys(dev, addr, 2048, FROM_DEVICE);
    });
    expect(u.get(Counter.SwiotlbBounceBytes)).toBe(2048);
    expect(platform.memory.read(physAddr(phys), 2048)).toEqual(pattern(2048, 8));
  });

  it("without swiotlb a buffer beyond the mask fails with DMA_MAPPING_ERROR and a kernel log line", () => {
    const { platform, kernel, dev } = rig({ kernel: { iommuMode: "off", swiotlb: false } });
    const m = moved(platform, () => dmaMapPhys(dev, physAddr(5 * GiB), 4096, TO_DEVICE));
    expect(m.result).toBe(DMA_MAPPING_ERROR);
    expect(dmaMappingError(dev, m.result)).toBe(-Errno.ENOMEM);
    expect(m.get(Counter.DmaMappingErrors)).toBe(1);
    const line = kernel.dmesg().at(-1);
    expect(line?.device).toBe(DEV);
    expect(line?.message).toMatch(/DMA addr 0x140000000\+4096 overflow \(mask ffffffff/);
    // Nothing to unmap: the error address is not a mapping, and dma-debug says so.
    expect(kernel.debug.entries(DEV)).toHaveLength(0);
  });

  it("swiotlb=force bounces every mapping, even one the device could reach", () => {
    const { platform, kernel, dev, ep } = rig({ kernel: { iommuMode: "off", swiotlb: { force: true } } });
    const phys = freshPages(platform, 1, { below: 1 * GiB });
    platform.memory.write(physAddr(phys), pattern(512, 6));
    const addr = dmaMapPhys(dev, physAddr(phys), 512, BIDIRECTIONAL);
    dmaMappingError(dev, addr);
    expect(addr).not.toBe(phys);
    expect(kernel.swiotlb!.isSwiotlbBuffer(unsafePhysAddr(addr))).toBe(true);
    expect(ep.dmaRead(addr, 512)).toEqual(pattern(512, 6));
    ep.dmaWrite(addr, pattern(512, 7));
    dmaUnmapPhys(dev, addr, 512, BIDIRECTIONAL);
    expect(platform.memory.read(physAddr(phys), 512)).toEqual(pattern(512, 7));
    // A bounced device needs its unmaps even with dma-debug off.
    expect(dev.dmaSkipSync).toBe(false);
  });

  it("a confidential guest bounces every mapping; the device cannot reach private memory", () => {
    const { platform, kernel, dev, ep } = rig({ kernel: { iommuMode: "off" }, confidential: true });
    const phys = freshPages(platform, 1);
    platform.memory.write(physAddr(phys), pattern(1024, 10));
    let err: unknown;
    try {
      ep.dmaRead(unsafeDmaAddr(phys), 16);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PcieAccessError);
    expect((err as PcieAccessError).kind).toBe("private-memory");
    const addr = dmaMapPhys(dev, physAddr(phys), 1024, BIDIRECTIONAL);
    expect(dmaMappingError(dev, addr)).toBe(0);
    expect(kernel.swiotlb!.isSwiotlbBuffer(unsafePhysAddr(addr))).toBe(true);
    expect(ep.dmaRead(addr, 1024)).toEqual(pattern(1024, 10));
    ep.dmaWrite(addr, pattern(1024, 11));
    dmaUnmapPhys(dev, addr, 1024, BIDIRECTIONAL);
    expect(platform.memory.read(physAddr(phys), 1024)).toEqual(pattern(1024, 11));
  });
});

describe("dmaMappingError", () => {
  it("is -ENOMEM for DMA_MAPPING_ERROR and 0 for any real address", () => {
    const { dev } = rig();
    expect(dmaMappingError(dev, DMA_MAPPING_ERROR)).toBe(-12);
    expect(dmaMappingError(dev, dmaAddr(0))).toBe(0);
    expect(dmaMappingError(dev, dmaAddr(0x1234_5000))).toBe(0);
  });
});

describe("dmaMapPage", () => {
  it("maps page_to_phys(page) + offset", () => {
    const { platform, dev, ep } = rig();
    const phys = freshPages(platform, 2);
    platform.memory.write(physAddr(phys + PAGE_SIZE + 0x40), pattern(256, 12));
    const addr = dmaMapPage(dev, phys / PAGE_SIZE + 1, 0x40, 256, TO_DEVICE);
    expect(dmaMappingError(dev, addr)).toBe(0);
    expect(dev.domain!.iovaToPhys(iova(addr))).toBe(phys + PAGE_SIZE + 0x40);
    expect(ep.dmaRead(addr, 256)).toEqual(pattern(256, 12));
    dmaUnmapPage(dev, addr, 256, TO_DEVICE);
    expect(dev.domain!.iovaToPhys(iova(addr))).toBeUndefined();
  });

  it("refuses DMA_ATTR_MMIO with DMA_MAPPING_ERROR and no warning, mapping nothing", () => {
    const { platform, kernel, dev } = rig({ kernel: { debug: "collect" } });
    const phys = freshPages(platform, 1);
    const m = moved(platform, () => dmaMapPage(dev, phys / PAGE_SIZE, 0, 64, TO_DEVICE, DMA_ATTR_MMIO));
    expect(m.result).toBe(DMA_MAPPING_ERROR);
    expect(m.get(Counter.PteWrites)).toBe(0);
    expect(kernel.debugReports()).toEqual([]);
  });

  it("dmaUnmapPage with DMA_ATTR_MMIO does nothing: the mapping stays, dma-debug is not asked", () => {
    const { platform, kernel, dev, ep } = rig({ kernel: { debug: "collect" } });
    const phys = freshPages(platform, 1);
    platform.memory.write(physAddr(phys), pattern(64, 3));
    const addr = dmaMapPage(dev, phys / PAGE_SIZE, 0, 64, TO_DEVICE);
    expect(dmaMappingError(dev, addr)).toBe(0);
    const m = moved(platform, () => {
      dmaUnmapPage(dev, addr, 64, TO_DEVICE, DMA_ATTR_MMIO);
      dmaUnmapPage(dev, dmaAddr(0x1234), 64, TO_DEVICE, DMA_ATTR_MMIO); // not even a mapping: still nothing
    });
    expect([m.get(Counter.DmaUnmapCalls), m.get(Counter.PteClears)]).toEqual([0, 0]);
    expect(kernel.debugReports()).toEqual([]);
    expect(ep.dmaRead(addr, 64)).toEqual(pattern(64, 3));
    dmaUnmapPage(dev, addr, 64, TO_DEVICE);
    expect(kernel.debugReports()).toEqual([]);
  });

  it("refuses P2P pages with DMA_MAPPING_ERROR and a warning", () => {
    const { platform, kernel, dev } = rig({
      kernel: { debug: "collect" },
      endpoints: [{ bdf: "0000:03:00.0", bars: [{ size: 1 * MiB }] }],
    });
    const provider = platform.addP2pdmaProvider("0000:03:00.0", 0);
    const m = moved(platform, () => dmaMapPage(dev, provider.phys / PAGE_SIZE, 0, 64, BIDIRECTIONAL));
    expect(m.result).toBe(DMA_MAPPING_ERROR);
    expect(m.get(Counter.IommuMapCalls)).toBe(0);
    expect(kernel.debugReports().map((r) => r.check)).toEqual(["api-warn"]);
    expect(kernel.debugReports()[0]!.message).toMatch(/p2pdma/);
  });

  it("rejects a pfn without a struct page and bad arguments as DmaInputError", () => {
    const { platform, dev } = rig();
    const before = platform.trace.counters.snapshot();
    expect(() => dmaMapPage(dev, (16 * GiB) / PAGE_SIZE, 0, 64, TO_DEVICE)).toThrow(DmaInputError);
    expect(() => dmaMapPage(dev, 1.5, 0, 64, TO_DEVICE)).toThrow(/pfn = 1.5 is invalid/);
    expect(() => dmaMapPage(dev, 16, -1, 64, TO_DEVICE)).toThrow(/offset = -1/);
    expect(() => dmaMapPage(dev, 16, 0, 64, 7 as DmaDirection)).toThrow(/dir = 0x7/);
    expect(platform.trace.counters.snapshot().diff(before).nonZero()).toEqual({});
  });
});

describe("dmaMapResource", () => {
  const PEER = "0000:03:00.0";
  it("maps a peer BAR through the IOMMU with MMIO attributes", () => {
    const { platform, dev } = rig({ endpoints: [{ bdf: PEER, bars: [{ size: 1 * MiB }] }] });
    const bar = platform.endpoint(PEER).bars[0]!;
    const addr = dmaMapResource(dev, physAddr(bar.phys + 0x2000), 0x1000, BIDIRECTIONAL);
    expect(dmaMappingError(dev, addr)).toBe(0);
    expect(dev.domain!.iovaToPhys(iova(addr))).toBe(bar.phys + 0x2000);
    dmaUnmapResource(dev, addr, 0x1000, BIDIRECTIONAL);
    expect(dev.domain!.iovaToPhys(iova(addr))).toBeUndefined();
  });

  it("on dma-direct returns the physical address unchanged and does no cache maintenance", () => {
    const { platform, dev } = rig({
      kernel: { iommuMode: "off", devices: { [DEV]: { coherent: false, dmaMaskBits: 64 } } },
      endpoints: [{ bdf: PEER, bars: [{ size: 1 * MiB }] }],
    });
    const bar = platform.endpoint(PEER).bars[0]!;
    const m = moved(platform, () => dmaMapResource(dev, bar.phys, 0x1000, TO_DEVICE));
    expect(m.result).toBe(bar.phys);
    expect(m.get(Counter.CacheLinesWrittenBack) + m.get(Counter.SwiotlbBounceBytes)).toBe(0);
    dmaMappingError(dev, m.result);
    dmaUnmapResource(dev, m.result, 0x1000, TO_DEVICE);
  });

  it("refuses RAM (memory with a struct page) with DMA_MAPPING_ERROR and a warning", () => {
    const { platform, kernel, dev } = rig({ kernel: { debug: "collect" } });
    const phys = freshPages(platform, 1);
    expect(dmaMapResource(dev, physAddr(phys), 64, TO_DEVICE)).toBe(DMA_MAPPING_ERROR);
    expect(kernel.debugReports().map((r) => r.check)).toEqual(["api-warn"]);
    expect(kernel.debugReports()[0]!.message).toMatch(/pfn_valid/);
    expect(dev.domain!.mappedBytes).toBe(0);
  });
});

describe("dmaSyncSingleForCpu / dmaSyncSingleForDevice on a bounced mapping", () => {
  it("moves the device's bytes to the buffer for the CPU and the CPU's bytes to the slot for the device", () => {
    const { platform, dev, ep } = rig({ kernel: { iommuMode: "off" } });
    const phys = 5 * GiB;
    const addr = dmaMapPhys(dev, physAddr(phys), 4096, BIDIRECTIONAL);
    expect(dmaMappingError(dev, addr)).toBe(0);
    ep.dmaWrite(addr, pattern(4096, 20));
    expect(platform.memory.read(physAddr(phys), 16)).toEqual(new Uint8Array(16));
    dmaSyncSingleForCpu(dev, addr, 4096, BIDIRECTIONAL);
    expect(platform.memory.read(physAddr(phys), 4096)).toEqual(pattern(4096, 20));
    platform.memory.write(physAddr(phys), pattern(4096, 21));
    expect(ep.dmaRead(addr, 16)).toEqual(pattern(16, 20));
    dmaSyncSingleForDevice(dev, addr, 4096, BIDIRECTIONAL);
    expect(ep.dmaRead(addr, 4096)).toEqual(pattern(4096, 21));
    dmaUnmapPhys(dev, addr, 4096, BIDIRECTIONAL);
  });

  it("a partial sync copies only the synced part", () => {
    const { platform, dev, ep } = rig({ kernel: { iommuMode: "off" } });
    const phys = 5 * GiB;
    const addr = dmaMapPhys(dev, physAddr(phys), 4096, FROM_DEVICE);
    dmaMappingError(dev, addr);
    ep.dmaWrite(addr, pattern(4096, 22));
    const m = moved(platform, () => {
      dmaSyncSingleForCpu(dev, dmaAddr(addr + 1024), 512, FROM_DEVICE);
    });
    expect(m.get(Counter.SwiotlbBounceBytes)).toBe(512);
    expect(platform.memory.read(physAddr(phys + 1024), 512)).toEqual(pattern(4096, 22).subarray(1024, 1536));
    expect(platform.memory.read(physAddr(phys), 1024)).toEqual(new Uint8Array(1024));
    dmaUnmapPhys(dev, addr, 4096, FROM_DEVICE);
  });

  it("an untrusted device bounces unaligned buffers inside iommu-dma, with the padding zeroed", () => {
    const { platform, kernel } = rig();
    const dev = kernel.device(UNTRUSTED);
    const ep = platform.endpoint(UNTRUSTED);
    const phys = freshPages(platform, 1);
    platform.memory.write(physAddr(phys), new Uint8Array(PAGE_SIZE).fill(0xee)); // neighbouring kernel data
    platform.memory.write(physAddr(phys + 256), pattern(512, 23));
    const addr = dmaMapPhys(dev, physAddr(phys + 256), 512, BIDIRECTIONAL);
    expect(dmaMappingError(dev, addr)).toBe(0);
    const target = dev.domain!.iovaToPhys(iova(addr))!;
    expect(kernel.swiotlb!.isSwiotlbBuffer(target)).toBe(true);
    expect(ep.dmaRead(addr, 512)).toEqual(pattern(512, 23));
    // The rest of the granule the device can reach holds zeros, never the neighbours' 0xee.
    const off = addr % PAGE_SIZE;
    const granule = ep.dmaRead(unsafeDmaAddr(addr - off), PAGE_SIZE);
    expect(granule.subarray(0, off)).toEqual(new Uint8Array(off));
    expect(granule.subarray(off + 512)).toEqual(new Uint8Array(PAGE_SIZE - off - 512));
    ep.dmaWrite(addr, pattern(512, 24));
    dmaSyncSingleForCpu(dev, addr, 512, BIDIRECTIONAL);
    expect(platform.memory.read(physAddr(phys + 256), 512)).toEqual(pattern(512, 24));
    expect(platform.memory.read(physAddr(phys), 256)).toEqual(new Uint8Array(256).fill(0xee));
    dmaUnmapPhys(dev, addr, 512, BIDIRECTIONAL);
    expect(kernel.swiotlb!.isSwiotlbBuffer(target)).toBe(true); // the pool is still there …
    expect(dev.domain!.iovaToPhys(iova(addr))).toBeUndefined(); // … but the mapping is gone
  });
});

describe("an untrusted device without swiotlb", () => {
  it("refuses an unaligned mapping rather than expose the rest of the granule, and maps aligned ones", () => {
    const { platform, kernel } = rig({ kernel: { swiotlb: false } });
    const dev = kernel.device(UNTRUSTED);
    const phys = freshPages(platform, 2);
    const m = moved(platform, () => dmaMapPhys(dev, physAddr(phys + 256), 512, BIDIRECTIONAL));
    expect(m.result).toBe(DMA_MAPPING_ERROR);
    expect(m.get(Counter.PteWrites)).toBe(0);
    expect(dev.domain!.mappedBytes).toBe(0);
    expect(kernel.dmesg().map((l) => l.message)).toEqual(["DMA bounce buffers are inactive, unable to map unaligned transaction."]);
    const aligned = dmaMapPhys(dev, physAddr(phys), 2 * PAGE_SIZE, BIDIRECTIONAL);
    expect(dmaMappingError(dev, aligned)).toBe(0);
    expect(dev.domain!.iovaToPhys(iova(aligned))).toBe(phys);
    dmaUnmapPhys(dev, aligned, 2 * PAGE_SIZE, BIDIRECTIONAL);
  });

  it("warns once per device, as dev_warn_once does, however many mappings it refuses", () => {
    const { platform, kernel } = rig({ kernel: { swiotlb: false } });
    const dev = kernel.device(UNTRUSTED);
    const phys = freshPages(platform, 2);
    expect(dmaMapPhys(dev, physAddr(phys + 256), 512, BIDIRECTIONAL)).toBe(DMA_MAPPING_ERROR);
    expect(dmaMapPhys(dev, physAddr(phys + 1024), 100, BIDIRECTIONAL)).toBe(DMA_MAPPING_ERROR);
    expect(kernel.dmesg()).toHaveLength(1);
  });
});

describe("the CPU cache and a non-coherent device", () => {
  function nonCoherent(iommuMode: "strict" | "off") {
    return rig({ kernel: { iommuMode, devices: { [DEV]: { coherent: false } } } });
  }

  for (const mode of ["strict", "off"] as const) {
    it(`(${mode}) a CPU write before the map reaches the device: map cleans the cache`, () => {
      const { platform, kernel, dev, ep } = nonCoherent(mode);
      const phys = freshPages(platform, 1);
      kernel.cpuWrite(unsafePhysAddr(phys), pattern(256, 30));
      expect(platform.memory.read(physAddr(phys), 256)).toEqual(new Uint8Array(256)); // still only in the cache
      const m = moved(platform, () => dmaMapPhys(dev, physAddr(phys), 256, TO_DEVICE));
      expect(dmaMappingError(dev, m.result)).toBe(0);
      expect(m.get(Counter.CacheLinesWrittenBack)).toBe(4);
      expect(ep.dmaRead(m.result, 256)).toEqual(pattern(256, 30));
      dmaUnmapPhys(dev, m.result, 256, TO_DEVICE);
    });

    it(`(${mode}) a CPU write after the map is stale for the device until dmaSyncSingleForDevice`, () => {
      const { platform, kernel, dev, ep } = nonCoherent(mode);
      const phys = freshPages(platform, 1);
      kernel.cpuWrite(unsafePhysAddr(phys), pattern(256, 31));
      const addr = dmaMapPhys(dev, physAddr(phys), 256, TO_DEVICE);
      dmaMappingError(dev, addr);
      kernel.cpuWrite(unsafePhysAddr(phys), pattern(256, 32));
      expect(ep.dmaRead(addr, 256)).toEqual(pattern(256, 31));
      dmaSyncSingleForDevice(dev, addr, 256, TO_DEVICE);
      expect(ep.dmaRead(addr, 256)).toEqual(pattern(256, 32));
      dmaUnmapPhys(dev, addr, 256, TO_DEVICE);
    });

    it(`(${mode}) the CPU reads stale cached lines after a device write until dmaSyncSingleForCpu`, () => {
      const { platform, kernel, dev, ep } = nonCoherent(mode);
      const phys = freshPages(platform, 1);
      const addr = dmaMapPhys(dev, physAddr(phys), 256, FROM_DEVICE);
      dmaMappingError(dev, addr);
      expect(kernel.cpuRead(unsafePhysAddr(phys), 256)).toEqual(new Uint8Array(256)); // the driver peeks: lines now cached
      ep.dmaWrite(addr, pattern(256, 33));
      expect(kernel.cpuRead(unsafePhysAddr(phys), 256)).toEqual(new Uint8Array(256));
      const m = moved(platform, () => {
        dmaSyncSingleForCpu(dev, addr, 256, FROM_DEVICE);
      });
      expect(m.get(Counter.CacheLinesInvalidated)).toBe(4);
      expect(kernel.cpuRead(unsafePhysAddr(phys), 256)).toEqual(pattern(256, 33));
      ep.dmaWrite(addr, pattern(256, 34));
      expect(kernel.cpuRead(unsafePhysAddr(phys), 256)).toEqual(pattern(256, 33));
      dmaUnmapPhys(dev, addr, 256, FROM_DEVICE); // unmap syncs for the CPU too
      expect(kernel.cpuRead(unsafePhysAddr(phys), 256)).toEqual(pattern(256, 34));
    });
  }

  it("DMA_ATTR_SKIP_CPU_SYNC leaves cache maintenance to the driver: without it the device reads stale memory", () => {
    const { platform, kernel, dev, ep } = nonCoherent("strict");
    const phys = freshPages(platform, 1);
    kernel.cpuWrite(unsafePhysAddr(phys), pattern(128, 35));
    const m = moved(platform, () => dmaMapPhys(dev, physAddr(phys), 128, TO_DEVICE, DMA_ATTR_SKIP_CPU_SYNC));
    expect(dmaMappingError(dev, m.result)).toBe(0);
    expect(m.get(Counter.CacheLinesWrittenBack)).toBe(0);
    expect(ep.dmaRead(m.result, 128)).toEqual(new Uint8Array(128));
    dmaSyncSingleForDevice(dev, m.result, 128, TO_DEVICE);
    expect(ep.dmaRead(m.result, 128)).toEqual(pattern(128, 35));
    dmaUnmapPhys(dev, m.result, 128, TO_DEVICE, DMA_ATTR_SKIP_CPU_SYNC);
  });

  it("a coherent device needs no cache maintenance", () => {
    const { platform, dev } = rig();
    const phys = freshPages(platform, 1);
    const m = moved(platform, () => {
      const addr = dmaMapPhys(dev, physAddr(phys), 256, BIDIRECTIONAL);
      dmaMappingError(dev, addr);
      dmaSyncSingleForCpu(dev, addr, 256, BIDIRECTIONAL);
      dmaSyncSingleForDevice(dev, addr, 256, BIDIRECTIONAL);
      dmaUnmapPhys(dev, addr, 256, BIDIRECTIONAL);
    });
    expect(m.get(Counter.CacheLinesWrittenBack) + m.get(Counter.CacheLinesInvalidated)).toBe(0);
    expect(m.get(Counter.DmaSyncCalls)).toBe(2);
  });
});

describe("swiotlb bounce copies are CPU copies: they see the CPU cache", () => {
  it("non-coherent dma-direct: a cached CPU store reaches the slot, the device's data reaches the CPU", () => {
    const { platform, kernel, dev, ep } = rig({ kernel: { iommuMode: "off", devices: { [DEV]: { coherent: false } } } });
    const phys = 5 * GiB;
    kernel.cpuWrite(unsafePhysAddr(phys), pattern(256, 40));
    const addr = dmaMapPhys(dev, physAddr(phys), 256, BIDIRECTIONAL);
    expect(dmaMappingError(dev, addr)).toBe(0);
    expect(ep.dmaRead(addr, 256)).toEqual(pattern(256, 40));
    // The CPU updates the buffer and hands it over again: the sync copies from the cache, not stale memory.
    kernel.cpuWrite(unsafePhysAddr(phys + 64), pattern(64, 41));
    dmaSyncSingleForDevice(dev, addr, 256, BIDIRECTIONAL);
    expect(ep.dmaRead(unsafeDmaAddr(addr + 64), 64)).toEqual(pattern(64, 41));
    expect(kernel.cpuRead(unsafePhysAddr(phys), 256).subarray(0, 64)).toEqual(pattern(256, 40).subarray(0, 64)); // lines now cached
    ep.dmaWrite(addr, pattern(256, 42));
    dmaUnmapPhys(dev, addr, 256, BIDIRECTIONAL);
    expect(kernel.cpuRead(unsafePhysAddr(phys), 256)).toEqual(pattern(256, 42));
    expect(platform.memory.read(physAddr(phys), 256)).toEqual(pattern(256, 42));
  });

  it("a partial cache line outside the buffer keeps the CPU's bytes when the device's data is copied back", () => {
    const { kernel, dev, ep } = rig({ kernel: { iommuMode: "off" } });
    const phys = 5 * GiB;
    kernel.cpuWrite(unsafePhysAddr(phys), new Uint8Array(128).fill(0x5a)); // the neighbour's bytes share the buffer's lines
    const addr = dmaMapPhys(dev, physAddr(phys + 32), 64, FROM_DEVICE);
    expect(dmaMappingError(dev, addr)).toBe(0);
    ep.dmaWrite(addr, pattern(64, 43));
    dmaUnmapPhys(dev, addr, 64, FROM_DEVICE);
    const seen = kernel.cpuRead(unsafePhysAddr(phys), 128);
    expect(seen.subarray(32, 96)).toEqual(pattern(64, 43));
    expect(seen.subarray(0, 32)).toEqual(new Uint8Array(32).fill(0x5a));
    expect(seen.subarray(96)).toEqual(new Uint8Array(32).fill(0x5a));
  });

  it("an untrusted device's bounce inside iommu-dma copies the cached CPU data", () => {
    const { kernel } = rig();
    const dev = kernel.device(UNTRUSTED);
    const ep = kernel.platform.endpoint(UNTRUSTED);
    const phys = freshPages(kernel.platform, 1) + 100;
    kernel.cpuWrite(unsafePhysAddr(phys), pattern(300, 44));
    const addr = dmaMapPhys(dev, physAddr(phys), 300, BIDIRECTIONAL);
    expect(dmaMappingError(dev, addr)).toBe(0);
    expect(ep.dmaRead(addr, 300)).toEqual(pattern(300, 44));
    ep.dmaWrite(addr, pattern(300, 45));
    dmaUnmapPhys(dev, addr, 300, BIDIRECTIONAL);
    expect(kernel.cpuRead(unsafePhysAddr(phys), 300)).toEqual(pattern(300, 45));
  });
});

describe("dmaNeedUnmap", () => {
  it("is true for iommu-dma, for non-coherent devices, and with dma-debug on", () => {
    expect(dmaNeedUnmap(rig().dev)).toBe(true);
    expect(dmaNeedUnmap(rig({ kernel: { iommuMode: "off", debug: "off", devices: { [DEV]: { coherent: false } } } }).dev)).toBe(true);
    expect(dmaNeedUnmap(rig({ kernel: { iommuMode: "off" } }).dev)).toBe(true);
  });

  it("is false for a coherent direct-mapped device with dma-debug off, until it bounces", () => {
    const { dev } = rig({ kernel: { iommuMode: "off", debug: "off" } });
    expect(dmaNeedUnmap(dev)).toBe(false);
    const addr = dmaMapPhys(dev, physAddr(5 * GiB), 64, TO_DEVICE);
    expect(dmaNeedUnmap(dev)).toBe(true);
    dmaUnmapPhys(dev, addr, 64, TO_DEVICE);
    expect(dmaNeedUnmap(dev)).toBe(true);
  });

  it("is true from the start with swiotlb=force", () => {
    expect(dmaNeedUnmap(rig({ kernel: { iommuMode: "off", debug: "off", swiotlb: { force: true } } }).dev)).toBe(true);
  });
});

describe("DMA parameters", () => {
  it("dmaGetMergeBoundary is granule - 1 with iommu-dma and 0 on dma-direct", () => {
    expect(dmaGetMergeBoundary(rig().dev)).toBe(PAGE_SIZE - 1);
    expect(dmaGetMergeBoundary(rig({ kernel: { iommuMode: "passthrough" } }).dev)).toBe(0);
    expect(dmaGetMergeBoundary(rig({ iommu: false }).dev)).toBe(0);
  });

  it("dmaSetMaskAndCoherent on dma-direct refuses masks below 24 bits with -EIO and keeps the old masks", () => {
    const { dev } = rig({ kernel: { iommuMode: "off" } });
    expect(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(20))).toBe(-Errno.EIO);
    expect(dmaGetMask(dev)).toBe(DMA_BIT_MASK(32));
    expect(dev.coherentDmaMask).toBe(DMA_BIT_MASK(32));
    expect(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(24))).toBe(0);
    expect(dmaGetMask(dev)).toBe(DMA_BIT_MASK(24));
    expect(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64))).toBe(0);
    expect(dmaGetMask(dev)).toBe(DMA_BIT_MASK(64));
    expect(dev.coherentDmaMask).toBe(DMA_BIT_MASK(64));
  });

  it("a 64-bit mask lets dma-direct reach a buffer above 4 GiB without bouncing", () => {
    const { platform, dev } = rig({ kernel: { iommuMode: "off" } });
    expect(dmaSetMask(dev, DMA_BIT_MASK(64))).toBe(0);
    const m = moved(platform, () => dmaMapPhys(dev, physAddr(5 * GiB), 64, TO_DEVICE));
    expect(m.result).toBe(5 * GiB);
    expect(m.get(Counter.SwiotlbBounceBytes)).toBe(0);
    dmaMappingError(dev, m.result);
    dmaUnmapPhys(dev, m.result, 64, TO_DEVICE);
  });

  it("iommu-dma accepts any mask and allocates IOVAs under it", () => {
    const { platform, dev } = rig();
    expect(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(20))).toBe(0);
    expect(dmaGetMask(dev)).toBe(DMA_BIT_MASK(20));
    const addr = dmaMapPhys(dev, physAddr(freshPages(platform, 1)), 8192, TO_DEVICE);
    expect(dmaMappingError(dev, addr)).toBe(0);
    expect(addr + 8191).toBeLessThanOrEqual(DMA_BIT_MASK(20));
    dmaUnmapPhys(dev, addr, 8192, TO_DEVICE);
  });

  it("the coherent mask can be set on its own", () => {
    const { dev } = rig({ kernel: { iommuMode: "off" } });
    expect(dmaSetCoherentMask(dev, DMA_BIT_MASK(30))).toBe(0);
    expect(dev.coherentDmaMask).toBe(DMA_BIT_MASK(30));
    expect(dmaGetMask(dev)).toBe(DMA_BIT_MASK(32));
  });

  it("bad masks are DmaInputError and change nothing", () => {
    const { dev } = rig();
    for (const bad of [-1, 1.5, NaN, 2 ** 53]) {
      expect(() => dmaSetMask(dev, bad)).toThrow(DmaInputError);
      expect(() => dmaSetMaskAndCoherent(dev, bad)).toThrow(/dma_set_mask: mask = .* is invalid/);
    }
    expect(dmaGetMask(dev)).toBe(DMA_BIT_MASK(32));
  });

  it("segment size, boundary and minimum alignment setters apply good values and refuse bad ones", () => {
    const { dev } = rig();
    expect(dmaGetMaxSegSize(dev)).toBe(65536);
    expect(dmaGetSegBoundary(dev)).toBe(0xffffffff);
    dmaSetMaxSegSize(dev, 1 * MiB);
    expect(dmaGetMaxSegSize(dev)).toBe(1 * MiB);
    dmaSetSegBoundary(dev, 0xffff);
    expect(dmaGetSegBoundary(dev)).toBe(0xffff);
    dmaSetSegBoundary(dev, 2 ** 40 - 1);
    expect(dmaGetSegBoundary(dev)).toBe(2 ** 40 - 1);
    dmaSetMinAlignMask(dev, 0xfff);
    expect(dev.minAlignMask).toBe(0xfff);
    for (const bad of [0, -1, 1.5, 2 ** 32]) expect(() => { dmaSetMaxSegSize(dev, bad); }).toThrow(DmaInputError);
    for (const bad of [0x1000, 0x1001, -1, 0.5, 2 ** 40 + 2 ** 32 - 1, 2 ** 52]) {
      expect(() => { dmaSetSegBoundary(dev, bad); }).toThrow(/dma_set_seg_boundary: mask = .* expected 2\^n - 1/);
      expect(() => { dmaSetMinAlignMask(dev, bad); }).toThrow(DmaInputError);
    }
    expect(dmaGetMaxSegSize(dev)).toBe(1 * MiB);
    expect(dmaGetSegBoundary(dev)).toBe(2 ** 40 - 1);
    expect(dev.minAlignMask).toBe(0xfff);
  });
});

describe("bad input to the mapping calls", () => {
  it("is a DmaInputError naming the argument, and no state changes", () => {
    const { platform, kernel, dev } = rig();
    const phys = freshPages(platform, 1);
    const before = platform.trace.counters.snapshot();
    expect(() => dmaMapPhys(dev, unsafePhysAddr(-4096), 64, TO_DEVICE)).toThrow(/dma_map_phys: phys = -4096 is invalid/);
    expect(() => dmaMapPhys(dev, unsafePhysAddr(phys), -1, TO_DEVICE)).toThrow(/size = -1/);
    expect(() => dmaMapPhys(dev, unsafePhysAddr(2 ** 53 - 10), 64, TO_DEVICE)).toThrow(/below 2\^53/);
    expect(() => dmaMapPhys(dev, unsafePhysAddr(phys), 64, DmaDirection.NONE)).toThrow(/dir = 0x3 is invalid/);
    expect(() => dmaMapPhys(dev, unsafePhysAddr(phys), 64, TO_DEVICE, 1 << 20)).toThrow(/attrs = 0x100000/);
    expect(() => dmaMapPhys(dev, unsafePhysAddr(phys), 64, TO_DEVICE, 1 << 3)).toThrow(DmaInputError);
    expect(() => { dmaUnmapPhys(dev, unsafeDmaAddr(1.5), 64, TO_DEVICE); }).toThrow(/addr = 1.5/);
    expect(() => { dmaSyncSingleForCpu(dev, unsafeDmaAddr(4096), 64, 9 as DmaDirection); }).toThrow(DmaInputError);
    expect(platform.trace.counters.snapshot().diff(before).nonZero()).toEqual({});
    expect(kernel.debug.entries()).toHaveLength(0);
  });

  it("a zero-length mapping is refused as bad input on every path, leaving the allocator untouched", () => {
    for (const iommuMode of ["strict", "off"] as const) {
      const { platform, kernel, dev } = rig({ kernel: { iommuMode } });
      const phys = freshPages(platform, 1);
      const before = platform.trace.counters.snapshot();
      expect(() => dmaMapPhys(dev, unsafePhysAddr(phys), 0, TO_DEVICE)).toThrow(/dma_map_phys: size = 0x0 is invalid: expected a size > 0/);
      expect(() => dmaMapPage(dev, phys / PAGE_SIZE, 0, 0, TO_DEVICE)).toThrow(DmaInputError);
      expect(platform.trace.counters.snapshot().diff(before).nonZero()).toEqual({});
      expect(kernel.debug.entries()).toHaveLength(0);
      const next = dmaMapPhys(dev, physAddr(phys), 64, TO_DEVICE);
      expect(dmaMappingError(dev, next)).toBe(0);
      dmaUnmapPhys(dev, next, 64, TO_DEVICE);
    }
  });

});
