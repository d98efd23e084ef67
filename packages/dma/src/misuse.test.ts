import { describe, expect, it } from "vitest";
import { dmaAllocCoherent, dmaFreeCoherent } from "./coherent.js";
import { DMA_ATTR_SKIP_CPU_SYNC, DMA_MAPPING_ERROR, DmaDirection, dmaAddr, unsafeDmaAddr } from "./constants.js";
import { physToDma, dmaToPhys, dmaCapable } from "./direct-api.js";
import { DmaInputError } from "./errors.js";
import {
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
} from "./mapping.js";
import { dmaClassifyRange } from "./classify.js";
import { iommuDmaAllocIovaForDevice, iommuMap } from "./consumer-internals.js";
import { PciP2pdmaMapState, p2pdmaProviderOf, pciP2pdmaState } from "./p2p.js";
import type { DmaDevice } from "./device.js";
import { TRUSTED_BDF, allocBuffer, makeKernel } from "./test-fixtures.js";
import type { Fixture } from "./test-fixtures.js";
import { physAddr, unsafePhysAddr } from "@dmasim/memory";
import { unsafeIova } from "@dmasim/iommu";

// Bad input at the public boundary: a typed DmaInputError naming the argument, the value and what was
// expected — never a TypeError or RangeError from inside — and a refused call changes nothing (no counter
// moves, no page-table entry, no debug entry).

const TO_DEV = DmaDirection.TO_DEVICE;

/** Every counter that moved while `fn` ran (it must throw), plus the error it threw. */
function refused(f: Fixture, fn: () => unknown): { err: unknown; moved: Record<string, number> } {
  const before = f.platform.trace.counters.snapshot();
  const entries = f.kernel.debug.entries().length;
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(f.kernel.debug.entries().length).toBe(entries);
  return { err, moved: f.platform.trace.counters.snapshot().diff(before).nonZero() };
}

function expectInputError(f: Fixture, call: () => unknown, argument: string): void {
  const { err, moved } = refused(f, call);
  expect(err).toBeInstanceOf(DmaInputError);
  expect((err as DmaInputError).code).toBe("EINVAL");
  expect((err as DmaInputError).argument).toBe(argument);
  expect(moved).toEqual({});
}

type DevCall = readonly [string, (dev: DmaDevice, phys: number) => unknown];

/** One valid call of every public function that takes a device (the device is the thing under test). */
const DEVICE_CALLS: readonly DevCall[] = [
  ["dmaMapPhys", (d, p) => dmaMapPhys(d, physAddr(p), 4096, TO_DEV)],
  ["dmaUnmapPhys", (d) => { dmaUnmapPhys(d, dmaAddr(0x1000), 4096, TO_DEV); }],
  ["dmaMapPage", (d, p) => dmaMapPage(d, p / 4096, 0, 4096, TO_DEV)],
  ["dmaUnmapPage", (d) => { dmaUnmapPage(d, dmaAddr(0x1000), 4096, TO_DEV); }],
  ["dmaMapResource", (d) => dmaMapResource(d, physAddr(2 ** 40), 4096, TO_DEV)],
  ["dmaUnmapResource", (d) => { dmaUnmapResource(d, dmaAddr(0x1000), 4096, TO_DEV); }],
  ["dmaSyncSingleForCpu", (d) => { dmaSyncSingleForCpu(d, dmaAddr(0x1000), 4096, TO_DEV); }],
  ["dmaSyncSingleForDevice", (d) => { dmaSyncSingleForDevice(d, dmaAddr(0x1000), 4096, TO_DEV); }],
  ["dmaMappingError", (d) => dmaMappingError(d, dmaAddr(0x1000))],
  ["dmaNeedUnmap", (d) => dmaNeedUnmap(d)],
  ["dmaGetMask", (d) => dmaGetMask(d)],
  ["dmaGetMaxSegSize", (d) => dmaGetMaxSegSize(d)],
  ["dmaGetSegBoundary", (d) => dmaGetSegBoundary(d)],
  ["dmaGetMergeBoundary", (d) => dmaGetMergeBoundary(d)],
  ["dmaSetMask", (d) => dmaSetMask(d, 2 ** 40 - 1)],
  ["dmaSetCoherentMask", (d) => dmaSetCoherentMask(d, 2 ** 40 - 1)],
  ["dmaSetMaskAndCoherent", (d) => dmaSetMaskAndCoherent(d, 2 ** 40 - 1)],
  ["dmaSetMaxSegSize", (d) => { dmaSetMaxSegSize(d, 8192); }],
  ["dmaSetSegBoundary", (d) => { dmaSetSegBoundary(d, 0xffff); }],
  ["dmaSetMinAlignMask", (d) => { dmaSetMinAlignMask(d, 0xfff); }],
  ["dmaAllocCoherent", (d) => dmaAllocCoherent(d, 4096)],
  ["dmaFreeCoherent", (d, p) => { dmaFreeCoherent(d, 4096, physAddr(p), dmaAddr(0x1000)); }],
  ["physToDma", (d, p) => physToDma(d, physAddr(p))],
  ["dmaToPhys", (d) => dmaToPhys(d, dmaAddr(0x1000))],
  ["dmaCapable", (d) => dmaCapable(d, dmaAddr(0x1000), 4096)],
  ["dmaClassifyRange", (d, p) => dmaClassifyRange(d, unsafePhysAddr(p), 4096, TO_DEV)],
];

describe("a missing, foreign, non-device or unbound dev", () => {
  const bad: readonly (readonly [string, (f: Fixture) => unknown])[] = [
    ["undefined", () => undefined],
    ["null", () => null],
    ["a BDF string", () => TRUSTED_BDF],
    ["the endpoint", (f) => f.platform.endpoint(TRUSTED_BDF)],
    ["a look-alike object", (f) => ({ bound: true, bdf: TRUSTED_BDF, kernel: f.kernel, ops: "iommu" })],
    ["an unbound device", () => {
      const k = makeKernel();
      k.kernel.unbind(k.dev);
      return k.dev;
    }],
  ];
  for (const [name, call] of DEVICE_CALLS) {
    it(`${name}: every bad dev is a DmaInputError naming "dev", and nothing changes`, () => {
      const f = makeKernel();
      const buf = allocBuffer(f.platform, 4096);
      for (const [, make] of bad) expectInputError(f, () => call(make(f) as DmaDevice, buf.phys), "dev");
    });
  }
});

describe("numbers that are not addresses or sizes", () => {
  const NOT_NUMBERS: readonly unknown[] = [10n, "4096", Number.NaN, 1.5, 2 ** 53, -1, Infinity, undefined, null, {}];

  it("dma_map_phys refuses each for phys and size", () => {
    const f = makeKernel();
    for (const v of NOT_NUMBERS) {
      expectInputError(f, () => dmaMapPhys(f.dev, unsafePhysAddr(v as number), 4096, TO_DEV), "phys");
      expectInputError(f, () => dmaMapPhys(f.dev, unsafePhysAddr(0x100000), v as number, TO_DEV), "size");
    }
  });

  it("dma_map_page, the syncs and dma_unmap_phys refuse each", () => {
    const f = makeKernel();
    for (const v of NOT_NUMBERS) {
      expectInputError(f, () => dmaMapPage(f.dev, v as number, 0, 4096, TO_DEV), "pfn");
      expectInputError(f, () => { dmaSyncSingleForCpu(f.dev, unsafeDmaAddr(v as number), 4096, TO_DEV); }, "addr");
      expectInputError(f, () => { dmaSyncSingleForDevice(f.dev, unsafeDmaAddr(0x1000), v as number, TO_DEV); }, "size");
      if (v !== -1) expectInputError(f, () => { dmaUnmapPhys(f.dev, unsafeDmaAddr(v as number), 4096, TO_DEV); }, "addr");
    }
  });

  it("directions that are not a DmaDirection", () => {
    const f = makeKernel();
    for (const v of ["1", 1n, 4, -1, 0.5, Number.NaN, undefined]) expectInputError(f, () => dmaMapPhys(f.dev, unsafePhysAddr(0x100000), 4096, v as DmaDirection), "dir");
  });
});

describe("attrs with unknown bits", () => {
  it("is refused, also above bit 31 where a 32-bit `&` would see nothing", () => {
    const f = makeKernel();
    const buf = allocBuffer(f.platform, 4096);
    for (const attrs of [1 << 3, 1 << 20, 2 ** 32, 2 ** 33 + DMA_ATTR_SKIP_CPU_SYNC, 2 ** 40, -1, 0.5, "32"]) {
      expectInputError(f, () => dmaMapPhys(f.dev, unsafePhysAddr(buf.phys), 4096, TO_DEV, attrs as number), "attrs");
      expectInputError(f, () => dmaAllocCoherent(f.dev, 4096, attrs as number), "attrs");
    }
  });
});

describe("dma_mapping_error", () => {
  it("refuses a handle that is not a DMA address (undefined is not 'no error')", () => {
    const f = makeKernel();
    for (const v of [undefined, null, "0x1000", 10n, Number.NaN, 1.5, -2]) expectInputError(f, () => dmaMappingError(f.dev, unsafeDmaAddr(v as number)), "dma_addr");
    expect(dmaMappingError(f.dev, DMA_MAPPING_ERROR)).toBeLessThan(0);
    expect(dmaMappingError(f.dev, dmaAddr(0x1000))).toBe(0);
  });
});

describe("phys_to_dma, dma_to_phys, dma_capable", () => {
  it("refuse bad addresses and sizes, and give the kernel's answers for good ones", () => {
    const f = makeKernel({ iommu: null, devices: { [TRUSTED_BDF]: { busOffset: 0x1000_0000 } } });
    expect(physToDma(f.dev, physAddr(0x2000))).toBe(0x1000_2000);
    expect(dmaToPhys(f.dev, dmaAddr(0x1000_2000))).toBe(0x2000);
    expect(dmaCapable(f.dev, dmaAddr(0x1000), 4096)).toBe(true);
    expect(dmaCapable(f.dev, dmaAddr(2 ** 40), 4096)).toBe(false);
    for (const v of [undefined, "1", 10n, -1, 1.5, Number.NaN]) {
      expectInputError(f, () => physToDma(f.dev, unsafePhysAddr(v as number)), "paddr");
      expectInputError(f, () => dmaToPhys(f.dev, unsafeDmaAddr(v as number)), "dma_addr");
      expectInputError(f, () => dmaCapable(f.dev, unsafeDmaAddr(v as number), 1), "addr");
      expectInputError(f, () => dmaCapable(f.dev, unsafeDmaAddr(0), v as number), "size");
    }
    // Below the bus offset there is no physical address; past 2^53 there is no bus address.
    expectInputError(f, () => dmaToPhys(f.dev, unsafeDmaAddr(0xfff)), "dma_addr");
    expectInputError(f, () => physToDma(f.dev, unsafePhysAddr(Number.MAX_SAFE_INTEGER - 10)), "paddr");
    expectInputError(f, () => dmaCapable(f.dev, unsafeDmaAddr(Number.MAX_SAFE_INTEGER), 2), "size");
  });
});

describe("dma_set_mask and co", () => {
  it("on an unbound device are refused and leave the device's parameters as they were", () => {
    const f = makeKernel();
    const mask = f.dev.dmaMask;
    f.kernel.unbind(f.dev);
    expectInputError(f, () => dmaSetMask(f.dev, 2 ** 40 - 1), "dev");
    expectInputError(f, () => dmaSetMaskAndCoherent(f.dev, 2 ** 40 - 1), "dev");
    expectInputError(f, () => { dmaSetMaxSegSize(f.dev, 4096); }, "dev");
    expect(f.dev.dmaMask).toBe(mask);
    expect(f.dev.maxSegmentSize).toBe(65536);
  });
});

describe("a double dma_free_coherent with dma-debug off", () => {
  for (const iommu of [{}, null] as const) {
    it(`${iommu === null ? "dma-direct" : "iommu-dma"}: frees the IOVA and the pages once, and warns in dmesg`, () => {
      const f = makeKernel({ debug: "off", iommu });
      const a = dmaAllocCoherent(f.dev, 8192);
      expect(a).toBeDefined();
      if (a === undefined) return;
      dmaFreeCoherent(f.dev, 8192, a.cpuAddr, a.dmaHandle);
      const free = f.platform.memory.allocator.freeBytes;
      const before = f.platform.trace.counters.snapshot();
      dmaFreeCoherent(f.dev, 8192, a.cpuAddr, a.dmaHandle);
      expect(f.platform.trace.counters.snapshot().diff(before).nonZero()).toEqual({});
      expect(f.platform.memory.allocator.freeBytes).toBe(free);
      expect(f.kernel.dmesg().some((l) => l.message.includes('dma_free_coherent: no coherent allocation at DMA handle'))).toBe(true);
      // Had the IOVA (or the pages) gone back twice, two live allocations would now share them.
      const b = dmaAllocCoherent(f.dev, 8192);
      const c = dmaAllocCoherent(f.dev, 8192);
      expect(b?.dmaHandle).not.toBe(c?.dmaHandle);
      expect(b?.cpuAddr).not.toBe(c?.cpuAddr);
    });
  }
});

describe("P2P state, CPU access and the consumer internals", () => {
  it("pci_p2pdma_state refuses a state that is not a PciP2pdmaMapState, a bad dev and a bad phys", () => {
    const f = makeKernel();
    for (const s of [undefined, null, {}, { mem: undefined, map: 0 }]) expectInputError(f, () => pciP2pdmaState(s as PciP2pdmaMapState, f.dev, unsafePhysAddr(0x1000)), "state");
    expectInputError(f, () => pciP2pdmaState(new PciP2pdmaMapState(), undefined as unknown as DmaDevice, unsafePhysAddr(0x1000)), "dev");
    for (const p of [undefined, -1, 1.5, 10n, "0"]) {
      expectInputError(f, () => pciP2pdmaState(new PciP2pdmaMapState(), f.dev, unsafePhysAddr(p as number)), "phys");
      expectInputError(f, () => p2pdmaProviderOf(f.dev, unsafePhysAddr(p as number)), "phys");
    }
  });

  it("kernel.cpuWrite takes a Uint8Array; kernel.cpuRead refuses bad and enormous ranges before allocating", () => {
    const f = makeKernel();
    for (const b of [undefined, [1, 2], "ab", new Int8Array(2)] as unknown[]) expectInputError(f, () => { f.kernel.cpuWrite(unsafePhysAddr(0x1000), b as Uint8Array); }, "bytes");
    expectInputError(f, () => { f.kernel.cpuWrite(unsafePhysAddr(-1), new Uint8Array(1)); }, "phys");
    expectInputError(f, () => f.kernel.cpuRead(unsafePhysAddr(0x1000), 2 ** 40), "len");
    expectInputError(f, () => f.kernel.cpuRead(unsafePhysAddr(0x1000), 1.5), "size");
  });

  it("the iommu-dma pieces for consumer packages refuse a bad dev with a DmaInputError", () => {
    const f = makeKernel();
    for (const d of [undefined, null, TRUSTED_BDF]) {
      expectInputError(f, () => iommuDmaAllocIovaForDevice(d as unknown as DmaDevice, 4096, 2 ** 32 - 1), "dev");
      expectInputError(f, () => iommuMap(d as unknown as DmaDevice, unsafeIova(0x1000), unsafePhysAddr(0x1000), 4096, 3), "dev");
    }
  });
});
