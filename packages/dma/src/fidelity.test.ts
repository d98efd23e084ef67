import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Counter } from "./counters.js";
import { GiB, PAGE_SIZE, TiB, physAddr, unsafePhysAddr } from "@dmasim/memory";
import {
  DMA_ATTR_DEBUGGING_IGNORE_CACHELINES,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_BIT_MASK,
  DMA_MAPPING_ERROR,
  DmaDebugError,
  DmaConfigError,
  DmaDirection,
  dmaGetCacheAlignment,
  dmaKmallocSizeAligned,
  dmaMapPage,
  dmaMapPhys,
  dmaMappingError,
  dmaSetMask,
  dmaSyncSingleForCpu,
  dmaUnmapPhys,
  unsafeDmaAddr,
} from "./index.js";
import { DEV, UNTRUSTED, freshPages, moved, pattern, rig } from "./test-fixtures.js";
import { iova } from "@dmasim/iommu";
import { dmaAddr } from "./constants.js";

// Behaviour that follows a kernel function closely enough to be checked against it line by line.

const { BIDIRECTIONAL, TO_DEVICE, FROM_DEVICE } = DmaDirection;
const IGNORE = DMA_ATTR_DEBUGGING_IGNORE_CACHELINES;
const COHERENT = DMA_ATTR_REQUIRE_COHERENT;
const SKIP = DMA_ATTR_SKIP_CPU_SYNC;

describe("dma_map_phys: DMA_ATTR_REQUIRE_COHERENT on a device that is not DMA-coherent", () => {
  for (const iommuMode of ["strict", "off"] as const) {
    it(`(${iommuMode}) returns DMA_MAPPING_ERROR before choosing a path: nothing mapped, synced or recorded`, () => {
      const { platform, kernel, dev } = rig({ kernel: { iommuMode, devices: { [DEV]: { coherent: false } } } });
      expect(dev.ops).toBe(iommuMode === "off" ? "direct" : "iommu");
      const phys = freshPages(platform, 1);
      kernel.cpuWrite(unsafePhysAddr(phys), pattern(256, 5)); // dirty lines a mapping would have to write back
      const m = moved(platform, () => dmaMapPhys(dev, physAddr(phys), 4096, BIDIRECTIONAL, DMA_ATTR_REQUIRE_COHERENT));
      expect(m.result).toBe(DMA_MAPPING_ERROR);
      expect(dmaMappingError(dev, m.result)).toBe(-12);
      expect([m.get(Counter.CacheLinesWrittenBack), m.get(Counter.PteWrites), m.get(Counter.SwiotlbSlotsAllocated)]).toEqual([0, 0, 0]);
      expect(m.get(Counter.DmaMappingErrors)).toBe(1);
      expect(kernel.debug.entries(dev.bdf)).toHaveLength(0);
      expect(kernel.debugReports()).toHaveLength(0);
      // The page wrapper goes through the same check.
      expect(dmaMapPage(dev, phys / 4096, 0, 4096, FROM_DEVICE, DMA_ATTR_REQUIRE_COHERENT)).toBe(DMA_MAPPING_ERROR);
    });

    it(`(${iommuMode}) still maps for a coherent device`, () => {
      const { platform, dev, ep } = rig({ kernel: { iommuMode } });
      const phys = freshPages(platform, 1);
      platform.memory.write(physAddr(phys), pattern(4096, 6));
      const addr = dmaMapPhys(dev, physAddr(phys), 4096, BIDIRECTIONAL, DMA_ATTR_REQUIRE_COHERENT);
      expect(dmaMappingError(dev, addr)).toBe(0);
      expect(ep.dmaRead(addr, 4096)).toEqual(pattern(4096, 6));
      dmaUnmapPhys(dev, addr, 4096, BIDIRECTIONAL, DMA_ATTR_REQUIRE_COHERENT);
    });
  }
});

describe("dma-debug cacheline overlap (add_dma_entry / active_cacheline_insert)", () => {
  /** Maps [off, off+len) of one page with `attrs` after [0, 128) with `firstAttrs`; returns the checks reported. */
  function second(firstDir: DmaDirection, firstAttrs: number, dir: DmaDirection, attrs: number, off = 64, len = 64): string[] {
    const { platform, kernel, dev } = rig({ kernel: { debug: "collect" } });
    const phys = freshPages(platform, 1);
    dmaMappingError(dev, dmaMapPhys(dev, physAddr(phys), 128, firstDir, firstAttrs));
    dmaMappingError(dev, dmaMapPhys(dev, physAddr(phys + off), len, dir, attrs));
    return kernel.debugReports().map((r) => r.check);
  }

  it("tracks SKIP_CPU_SYNC and DEBUGGING_IGNORE_CACHELINES mappings: a plain mapping over them is reported", () => {
    expect(second(FROM_DEVICE, SKIP, FROM_DEVICE, 0)).toEqual(["cacheline-overlap"]);
    expect(second(BIDIRECTIONAL, IGNORE, FROM_DEVICE, 0)).toEqual(["cacheline-overlap"]);
    expect(second(FROM_DEVICE, COHERENT, BIDIRECTIONAL, 0)).toEqual(["cacheline-overlap"]);
  });

  it("reports a cache-clean mapping over one that is not: both must be cache-clean to be quiet", () => {
    expect(second(FROM_DEVICE, 0, FROM_DEVICE, IGNORE)).toEqual(["cacheline-overlap"]);
    expect(second(FROM_DEVICE, SKIP, FROM_DEVICE, COHERENT)).toEqual(["cacheline-overlap"]);
  });

  it("is quiet when both are cache-clean (IGNORE_CACHELINES or REQUIRE_COHERENT, in any pairing)", () => {
    for (const a of [IGNORE, COHERENT, IGNORE | COHERENT]) {
      for (const b of [IGNORE, COHERENT]) expect(second(FROM_DEVICE, a, BIDIRECTIONAL, b)).toEqual([]);
    }
  });

  it("is quiet for a new SKIP_CPU_SYNC mapping, and DMA_TO_DEVICE mappings are neither tracked nor judged", () => {
    expect(second(FROM_DEVICE, 0, FROM_DEVICE, SKIP)).toEqual([]);
    expect(second(FROM_DEVICE, 0, TO_DEVICE, 0)).toEqual([]);
    expect(second(TO_DEVICE, 0, FROM_DEVICE, 0)).toEqual([]);
  });

  it("judges every line (stronger than upstream's first line): an overlap in the middle is reported", () => {
    expect(second(FROM_DEVICE, 0, FROM_DEVICE, 0, 32, 64)).toEqual(["cacheline-overlap"]);
    expect(second(FROM_DEVICE, 0, FROM_DEVICE, 0, 128, 64)).toEqual([]);
  });

  it("a map that fails records nothing in dma-debug, even an overlap it would have had", () => {
    const { kernel, dev } = rig({ kernel: { debug: "collect", swiotlb: false, iommuMode: "off", devices: { [DEV]: { dmaMaskBits: 64 } } } });
    const high = 6 * GiB;
    dmaMappingError(dev, dmaMapPhys(dev, physAddr(high), 128, FROM_DEVICE));
    // A second mapping over the first once the mask no longer reaches it, with no swiotlb: the map fails.
    expect(dmaSetMask(dev, DMA_BIT_MASK(32))).toBe(0);
    const addr = dmaMapPhys(dev, physAddr(high + 64), 64, FROM_DEVICE);
    expect(addr).toBe(DMA_MAPPING_ERROR);
    expect(kernel.debugReports()).toEqual([]);
    expect(kernel.debug.entries(dev.bdf)).toHaveLength(1);
  });
});

describe("dma-debug cacheline overlap: property against the kernel's rules, line by line", () => {
  interface Live {
    readonly addr: number;
    readonly off: number;
    readonly len: number;
    readonly dir: DmaDirection;
    readonly attrs: number;
  }
  const lines = (m: { off: number; len: number }): [number, number] => [Math.floor(m.off / 64), Math.floor((m.off + m.len - 1) / 64)];
  const clean = (attrs: number): boolean => (attrs & (IGNORE | COHERENT)) !== 0;
  /** add_dma_entry's decision, with dmasim's every-line overlap instead of the first line. */
  function expectReport(live: readonly Live[], m: Omit<Live, "addr">): boolean {
    if (m.dir === TO_DEVICE || (m.attrs & SKIP) !== 0) return false;
    const [a, b] = lines(m);
    return live.some((o) => {
      if (o.dir === TO_DEVICE) return false;
      const [c, d] = lines(o);
      return c <= b && a <= d && !(clean(m.attrs) && clean(o.attrs));
    });
  }

  it("reports exactly the overlaps the rules call for, over random maps and unmaps", () => {
    const op = fc.oneof(
      fc.record({
        kind: fc.constant("map" as const),
        off: fc.integer({ min: 0, max: 31 }).map((x) => x * 16),
        len: fc.integer({ min: 1, max: 256 }),
        dir: fc.constantFrom(BIDIRECTIONAL, TO_DEVICE, FROM_DEVICE),
        attrs: fc.subarray([SKIP, IGNORE, COHERENT]).map((xs) => xs.reduce((x, y) => x | y, 0)),
      }),
      fc.record({ kind: fc.constant("unmap" as const), pick: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 30 }), (ops) => {
        const { platform, kernel, dev } = rig({ kernel: { debug: "collect", iommuMode: "off" }, ramBytes: 1 * GiB });
        const base = freshPages(platform, 1);
        const live: Live[] = [];
        let expected = 0;
        for (const o of ops) {
          if (o.kind === "map") {
            if (expectReport(live, o)) expected++;
            const addr = dmaMapPhys(dev, physAddr(base + o.off), o.len, o.dir, o.attrs);
            expect(dmaMappingError(dev, addr)).toBe(0);
            live.push({ addr, off: o.off, len: o.len, dir: o.dir, attrs: o.attrs });
          } else if (live.length > 0) {
            const [m] = live.splice(o.pick % live.length, 1);
            if (m !== undefined) dmaUnmapPhys(dev, dmaAddr(m.addr), m.len, m.dir, m.attrs);
          }
          expect(kernel.debugReports().filter((r) => r.check === "cacheline-overlap")).toHaveLength(expected);
        }
        for (const m of live) dmaUnmapPhys(dev, dmaAddr(m.addr), m.len, m.dir, m.attrs);
        expect(kernel.debug.cachelineRuns).toBe(0);
        expect(kernel.debugReports().map((r) => r.check).filter((c) => c !== "cacheline-overlap")).toEqual([]);
      }),
      { numRuns: 100 },
    );
  });
});

describe("dma-debug with huge mappings: an interval structure, never a step per cache line", () => {
  it("a 1.5 GiB mapping with dma-debug on maps, is judged against its neighbours, and unmaps", () => {
    const { kernel, dev } = rig({ kernel: { debug: "collect", iommuMode: "off" } });
    const phys = 1 * GiB;
    const size = 1.5 * GiB;
    const addr = dmaMapPhys(dev, physAddr(phys), size, FROM_DEVICE);
    expect(dmaMappingError(dev, addr)).toBe(0);
    expect(kernel.debug.cachelineRuns).toBe(1);
    dmaMappingError(dev, dmaMapPhys(dev, physAddr(phys + size - 64), 128, FROM_DEVICE)); // shares its last line
    expect(kernel.debugReports().map((r) => r.check)).toEqual(["cacheline-overlap"]);
    dmaUnmapPhys(dev, addr, size, FROM_DEVICE);
    expect(kernel.debug.entries(dev.bdf)).toHaveLength(1);
  });

  it("64 TiB under a 32-bit mask returns DMA_MAPPING_ERROR at once and records nothing", () => {
    for (const iommuMode of ["strict", "off"] as const) {
      const { platform, kernel, dev } = rig({ kernel: { debug: "collect", iommuMode } });
      expect(dmaSetMask(dev, DMA_BIT_MASK(32))).toBe(0);
      const phys = freshPages(platform, 1);
      const m = moved(platform, () => dmaMapPhys(dev, physAddr(phys), 64 * TiB, BIDIRECTIONAL));
      expect(m.result).toBe(DMA_MAPPING_ERROR);
      expect([m.get(Counter.PteWrites), m.get(Counter.SwiotlbSlotsAllocated)]).toEqual([0, 0]);
      expect(kernel.debug.entries(dev.bdf)).toHaveLength(0);
      expect(kernel.debugReports()).toEqual([]);
      expect(kernel.debug.cachelineRuns).toBe(0);
      expect(dmaMapPage(dev, phys / PAGE_SIZE, 0, 64 * TiB, FROM_DEVICE)).toBe(DMA_MAPPING_ERROR);
      expect(kernel.debug.entries(dev.bdf)).toHaveLength(0);
    }
  });

  it("64 TiB under a 64-bit mask through the IOMMU costs page-table work (1 GiB leaves), not cache lines", () => {
    const { platform, kernel, dev } = rig({ kernel: { debug: "collect" } });
    dmaSetMask(dev, DMA_BIT_MASK(64));
    const phys = 64 * TiB; // no RAM there: dma-debug reports the address, the IOMMU maps it all the same
    const m = moved(platform, () => dmaMapPhys(dev, physAddr(phys), 64 * TiB, BIDIRECTIONAL));
    expect(dmaMappingError(dev, m.result)).toBe(0);
    expect(m.get(Counter.PteWrites)).toBe(64 * 1024);
    expect(kernel.debugReports().map((r) => r.check)).toEqual(["map-invalid-address"]);
    expect(kernel.debug.cachelineRuns).toBe(1);
    dmaUnmapPhys(dev, m.result, 64 * TiB, BIDIRECTIONAL);
    expect(kernel.debug.cachelineRuns).toBe(0);
  });

  it("throw mode refuses an overlapping map before it is made and keeps the table intact", () => {
    const { platform, kernel, dev } = rig();
    const phys = freshPages(platform, 2);
    const a = dmaMapPhys(dev, physAddr(phys), 2 * PAGE_SIZE, FROM_DEVICE);
    dmaMappingError(dev, a);
    expect(() => dmaMapPhys(dev, unsafePhysAddr(phys + PAGE_SIZE), 64, FROM_DEVICE)).toThrow(DmaDebugError);
    expect(kernel.debug.entries(dev.bdf)).toHaveLength(1);
    dmaUnmapPhys(dev, a, 2 * PAGE_SIZE, FROM_DEVICE);
    expect(kernel.debug.cachelineRuns).toBe(0);
  });
});

describe("the kmalloc bounce rule (dma_kmalloc_needs_bounce / dma_kmalloc_size_aligned)", () => {
  /** Sizes from 1 to 300 that bounce for a non-coherent device reading back, as [from, to] runs. */
  function bouncingRuns(archDmaMinalign?: number): [number, number][] {
    const { platform, kernel, dev } = rig({
      kernel: { iommuMode: "off", kmallocBounce: true, debug: "off", ...(archDmaMinalign === undefined ? {} : { archDmaMinalign }), devices: { [DEV]: { coherent: false } } },
    });
    const phys = freshPages(platform, 1);
    const runs: [number, number][] = [];
    for (let size = 1; size <= 300; size++) {
      const addr = dmaMapPhys(dev, physAddr(phys), size, FROM_DEVICE);
      expect(dmaMappingError(dev, addr)).toBe(0);
      const bounced = kernel.swiotlb!.isSwiotlbBuffer(unsafePhysAddr(addr));
      expect(bounced).toBe(!dmaKmallocSizeAligned(size, dmaGetCacheAlignment(dev)));
      dmaUnmapPhys(dev, addr, size, FROM_DEVICE);
      if (!bounced) continue;
      const last = runs.at(-1);
      if (last?.[1] === size - 1) last[1] = size;
      else runs.push([size, size]);
    }
    return runs;
  }

  it("ARCH_DMA_MINALIGN 64 (default): kmalloc-8..32 and kmalloc-96 bounce; 33-64, 97-127 and 128 on do not", () => {
    expect(bouncingRuns()).toEqual([
      [1, 32],
      [65, 96],
    ]);
  });

  it("ARCH_DMA_MINALIGN 128: everything below 2 * 128 bounces except what comes from kmalloc-128 (or -256)", () => {
    expect(bouncingRuns(128)).toEqual([
      [1, 96],
      [129, 192],
    ]);
  });

  it("dmaGetCacheAlignment answers the kernel's ARCH_DMA_MINALIGN, which must be a power of two from 8 to 4096", () => {
    expect(dmaGetCacheAlignment(rig().dev)).toBe(64);
    expect(dmaGetCacheAlignment(rig({ kernel: { archDmaMinalign: 128 } }).dev)).toBe(128);
    for (const bad of [0, 4, 96, 8192, 64.5, "64" as never]) {
      expect(() => rig({ kernel: { archDmaMinalign: bad } })).toThrow(DmaConfigError);
    }
  });

  it("ARCH_DMA_MINALIGN below the CPU's cache line silences dma-debug's overlap report, as add_dma_entry", () => {
    const { platform, kernel, dev } = rig({ kernel: { debug: "collect", archDmaMinalign: 32 } });
    const phys = freshPages(platform, 1);
    dmaMappingError(dev, dmaMapPhys(dev, physAddr(phys), 32, FROM_DEVICE));
    dmaMappingError(dev, dmaMapPhys(dev, physAddr(phys + 32), 32, FROM_DEVICE));
    expect(kernel.debugReports()).toEqual([]);
  });
});

describe("swiotlb_bounce's negative tlb_offset through the DMA API", () => {
  it("a partial sync of a bounced untrusted NVMe-like mapping, starting in a later slot's first min_align bytes", () => {
    const { platform, kernel } = rig({ kernel: { devices: { [UNTRUSTED]: { minAlignMask: 0xfff } } } });
    const dev = kernel.device(UNTRUSTED);
    const ep = platform.endpoint(UNTRUSTED);
    const phys = freshPages(platform, 2) + 0x30; // unaligned: the untrusted device bounces it
    const size = 6000;
    platform.memory.write(physAddr(phys), pattern(size, 8));
    const addr = dmaMapPhys(dev, physAddr(phys), size, FROM_DEVICE);
    expect(dmaMappingError(dev, addr)).toBe(0);
    expect(kernel.swiotlb!.isSwiotlbBuffer(dev.domain!.iovaToPhys(iova(addr))!)).toBe(true);
    // Slot 1 of the bounce buffer begins 2048 - 0x30 = 2000 bytes into the mapping.
    const from = 2000 + 8;
    const written = pattern(60, 9);
    ep.dmaWrite(unsafeDmaAddr(addr + from), written);
    dmaSyncSingleForCpu(dev, dmaAddr(addr + from), 60, FROM_DEVICE);
    const expected = pattern(size, 8);
    expected.set(written, from);
    expect(platform.memory.read(physAddr(phys), size)).toEqual(expected);
    dmaUnmapPhys(dev, addr, size, FROM_DEVICE);
  });
});
