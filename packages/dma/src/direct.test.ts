import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { GiB, KiB, MiB, PAGE_SIZE, physAddr, unsafePhysAddr } from "@dmasim/memory";
import { Counter } from "./counters.js";
import {
  DMA_ATTR_MMIO,
  DMA_ATTR_NO_WARN,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_BIT_MASK,
  DMA_MAPPING_ERROR,
  DmaDirection,
  dmaCapable,
  dmaMapPhys,
  dmaMappingError,
  dmaSetMask,
  dmaToPhys,
  dmaUnmapPhys,
  physToDma,
} from "./index.js";
import { DEV, freshPages, moved, pattern, rig } from "./test-fixtures.js";
import { dmaAddr } from "./constants.js";

const { BIDIRECTIONAL, TO_DEVICE, FROM_DEVICE } = DmaDirection;

describe("phys_to_dma, dma_to_phys and dma_capable", () => {
  it("translate with the bus offset and check the whole range against the mask and bus limit", () => {
    const { dev } = rig({ kernel: { iommuMode: "off", devices: { [DEV]: { busOffset: 0x8000_0000 } } } });
    expect(physToDma(dev, physAddr(0x1000))).toBe(0x8000_1000);
    expect(dmaToPhys(dev, dmaAddr(0x8000_1000))).toBe(0x1000);
    expect(dmaCapable(dev, dmaAddr(0xffff_f000), 0x1000)).toBe(true);
    expect(dmaCapable(dev, dmaAddr(0xffff_f000), 0x1001)).toBe(false);
    expect(dmaCapable(dev, dmaAddr(0x1_0000_0000), 0)).toBe(false);
    dev.busDmaLimit = DMA_BIT_MASK(31);
    expect(dmaCapable(dev, dmaAddr(0x8000_0000), 1)).toBe(false);
    expect(dmaCapable(dev, dmaAddr(0x7fff_ffff), 1)).toBe(true);
  });

  it("property: a mapping is bounced exactly when the buffer is not DMA-capable", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 7 * 256 }), fc.integer({ min: 1, max: 16 * KiB }), (mib4, len) => {
        const { platform, kernel, dev } = rig({ kernel: { iommuMode: "off", debug: "off" } });
        const phys = mib4 * 4 * MiB + 0x800;
        const addr = dmaMapPhys(dev, physAddr(phys), len, TO_DEVICE);
        const capable = phys + len - 1 <= DMA_BIT_MASK(32);
        const inPool = kernel.swiotlb!.isSwiotlbBuffer(unsafePhysAddr(addr));
        // Buffers at the bottom of RAM may overlap the pool itself; skip those.
        if (phys < kernel.swiotlb!.end) return;
        expect(inPool).toBe(!capable);
        if (capable) expect(addr).toBe(phys);
        expect(platform.trace.counters.get(Counter.SwiotlbBounceBytes)).toBe(capable ? 0 : len);
        dmaUnmapPhys(dev, addr, len, TO_DEVICE);
      }),
      { numRuns: 30 },
    );
  });
});

describe("dma_direct_map_phys failures", () => {
  it("a full swiotlb gives DMA_MAPPING_ERROR and logs 'swiotlb buffer is full', unless DMA_ATTR_NO_WARN", () => {
    const { platform, kernel, dev } = rig({ kernel: { iommuMode: "off", swiotlb: { bytes: 512 * KiB }, cpus: 1 } });
    // Two 256 KiB mappings (the largest swiotlb allows) fill a 512 KiB pool.
    const a = dmaMapPhys(dev, physAddr(5 * GiB), 256 * KiB, TO_DEVICE);
    const b = dmaMapPhys(dev, physAddr(5 * GiB + MiB), 256 * KiB, TO_DEVICE);
    expect(dmaMappingError(dev, a)).toBe(0);
    expect(dmaMappingError(dev, b)).toBe(0);
    const m = moved(platform, () => dmaMapPhys(dev, physAddr(6 * GiB), 4096, TO_DEVICE));
    expect(m.result).toBe(DMA_MAPPING_ERROR);
    expect(m.get(Counter.SwiotlbAllocFail)).toBe(1);
    expect(m.get(Counter.DmaMappingErrors)).toBe(1);
    expect(kernel.dmesg().map((l) => l.message)).toEqual(["swiotlb buffer is full (sz: 4096 bytes)"]);
    expect(dmaMapPhys(dev, physAddr(6 * GiB), 4096, TO_DEVICE, DMA_ATTR_NO_WARN)).toBe(DMA_MAPPING_ERROR);
    expect(kernel.dmesg()).toHaveLength(1);
    // Freeing one mapping makes room again.
    dmaUnmapPhys(dev, a, 256 * KiB, TO_DEVICE);
    const c = dmaMapPhys(dev, physAddr(6 * GiB), 4096, TO_DEVICE);
    expect(dmaMappingError(dev, c)).toBe(0);
    expect(kernel.swiotlb!.isSwiotlbBuffer(unsafePhysAddr(c))).toBe(true);
  });

  it("a mapping larger than swiotlb's 256 KiB limit cannot be bounced", () => {
    const { kernel, dev } = rig({ kernel: { iommuMode: "off" } });
    const addr = dmaMapPhys(dev, physAddr(5 * GiB), 256 * KiB + 1, TO_DEVICE);
    expect(dmaMappingError(dev, addr)).toBe(-12);
    expect(kernel.dmesg().at(-1)?.message).toMatch(/swiotlb buffer is full \(sz: 262145 bytes\)/);
  });

  it("DMA_ATTR_REQUIRE_COHERENT refuses to bounce", () => {
    const { platform, kernel, dev } = rig({ kernel: { iommuMode: "off" } });
    const m = moved(platform, () => dmaMapPhys(dev, physAddr(5 * GiB), 4096, TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT));
    expect(m.result).toBe(DMA_MAPPING_ERROR);
    expect(m.get(Counter.SwiotlbSlotsAllocated)).toBe(0);
    expect(kernel.dmesg().at(-1)?.message).toMatch(/DMA addr 0x140000000\+4096 overflow/);
  });

  it("with swiotlb=force, MMIO and REQUIRE_COHERENT mappings fail instead of bouncing", () => {
    const PEER = "0000:03:00.0";
    const { platform, dev } = rig({
      kernel: { iommuMode: "off", swiotlb: { force: true }, devices: { [DEV]: { dmaMaskBits: 64 } } },
      endpoints: [{ bdf: PEER, bars: [{ size: 1 * MiB }] }],
    });
    const bar = platform.endpoint(PEER).bars[0]!;
    expect(dmaMapPhys(dev, bar.phys, 4096, TO_DEVICE, DMA_ATTR_MMIO)).toBe(DMA_MAPPING_ERROR);
    expect(dmaMapPhys(dev, physAddr(freshPages(platform, 1)), 4096, TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT)).toBe(DMA_MAPPING_ERROR);
    expect(platform.trace.counters.get(Counter.SwiotlbSlotsAllocated)).toBe(0);
  });

  it("MMIO beyond the mask overflows with a log line and is never bounced", () => {
    const PEER = "0000:03:00.0";
    const { platform, kernel, dev } = rig({
      kernel: { iommuMode: "off" },
      endpoints: [{ bdf: PEER, bars: [{ size: 1 * MiB }] }],
    });
    const bar = platform.endpoint(PEER).bars[0]!;
    expect(bar.phys).toBeGreaterThan(DMA_BIT_MASK(32)); // BARs sit above RAM
    expect(dmaMapPhys(dev, bar.phys, 4096, TO_DEVICE, DMA_ATTR_MMIO)).toBe(DMA_MAPPING_ERROR);
    expect(kernel.dmesg().at(-1)?.message).toMatch(/^DMA addr 0x[0-9a-f]+\+4096 overflow/);
    expect(platform.trace.counters.get(Counter.SwiotlbSlotsAllocated)).toBe(0);
    expect(dmaSetMask(dev, DMA_BIT_MASK(64))).toBe(0);
    const addr = dmaMapPhys(dev, bar.phys, 4096, TO_DEVICE, DMA_ATTR_MMIO);
    expect(addr).toBe(bar.phys);
  });

  it("a bounce slot the device cannot reach is given back and the mapping fails", () => {
    // A bus offset of 4 GiB puts every address, the pool's too, beyond a 32-bit mask.
    const { platform, kernel, dev } = rig({ kernel: { iommuMode: "off", devices: { [DEV]: { busOffset: 4 * GiB } } } });
    const m = moved(platform, () => dmaMapPhys(dev, physAddr(freshPages(platform, 1)), 4096, TO_DEVICE));
    expect(m.result).toBe(DMA_MAPPING_ERROR);
    expect(m.get(Counter.SwiotlbSlotsAllocated)).toBe(m.get(Counter.SwiotlbSlotsFreed));
    expect(kernel.dmesg().at(-1)?.message).toMatch(/^swiotlb addr 0x1[0-9a-f]{8}\+4096 overflow/);
    expect(kernel.swiotlb!.stats.used).toBe(0);
  });
});

describe("kmalloc bouncing (CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC)", () => {
  it("bounces a non-coherent device's buffer from a kmalloc cache not aligned to ARCH_DMA_MINALIGN, unless TO_DEVICE", () => {
    const { platform, kernel, dev, ep } = rig({ kernel: { iommuMode: "off", kmallocBounce: true, devices: { [DEV]: { coherent: false } } } });
    const phys = freshPages(platform, 1);
    const rx = dmaMapPhys(dev, physAddr(phys + 64), 80, FROM_DEVICE); // kmalloc-96
    dmaMappingError(dev, rx);
    expect(kernel.swiotlb!.isSwiotlbBuffer(unsafePhysAddr(rx))).toBe(true);
    ep.dmaWrite(rx, pattern(80, 1));
    dmaUnmapPhys(dev, rx, 80, FROM_DEVICE);
    expect(platform.memory.read(physAddr(phys + 64), 80)).toEqual(pattern(80, 1));
    const tx = dmaMapPhys(dev, physAddr(phys + 512), 80, TO_DEVICE);
    dmaMappingError(dev, tx);
    expect(tx).toBe(phys + 512);
    const whole = dmaMapPhys(dev, physAddr(phys + 1024), 128, BIDIRECTIONAL);
    dmaMappingError(dev, whole);
    expect(whole).toBe(phys + 1024);
  });

  it("leaves coherent devices alone", () => {
    const { platform, dev } = rig({ kernel: { iommuMode: "off", kmallocBounce: true } });
    const phys = freshPages(platform, 1);
    expect(dmaMapPhys(dev, physAddr(phys + 64), 100, FROM_DEVICE)).toBe(phys + 64);
  });
});

describe("dma_direct_unmap_phys", () => {
  it("needs no work for MMIO and frees the slot of a bounced buffer", () => {
    const { platform, kernel, dev } = rig({ kernel: { iommuMode: "off" } });
    const addr = dmaMapPhys(dev, physAddr(5 * GiB), 3 * PAGE_SIZE, BIDIRECTIONAL);
    dmaMappingError(dev, addr);
    expect(kernel.swiotlb!.stats.used).toBeGreaterThan(0);
    const m = moved(platform, () => {
      dmaUnmapPhys(dev, addr, 3 * PAGE_SIZE, BIDIRECTIONAL);
    });
    expect(m.get(Counter.SwiotlbSlotsFreed)).toBe(6);
    expect(m.get(Counter.SwiotlbBounceBytes)).toBe(3 * PAGE_SIZE); // BIDIRECTIONAL copies back
    expect(kernel.swiotlb!.stats.used).toBe(0);
  });
});
