import { describe, expect, it } from "vitest";
import { GiB, PAGE_SIZE, PageFlag, physAddr, unsafePhysAddr } from "@dmasim/memory";
import { Counter } from "./counters.js";
import {
  DMA_ATTR_MMIO,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_MAPPING_ERROR,
  DmaDebugError,
  DmaDirection,
  DmaInputError,
  dmaMapPhys,
  dmaMappingError,
  dmaSyncSingleForCpu,
  dmaSyncSingleForDevice,
  dmaUnmapPhys,
  unsafeDmaAddr,
} from "./index.js";
import type { DmaDebugCheck } from "./index.js";
import type { DmaDevice } from "./device.js";
import { DEV, freshPages, moved, pattern, rig } from "./test-fixtures.js";
import type { Rig } from "./test-fixtures.js";
import { iova } from "@dmasim/iommu";
import { dmaAddr } from "./constants.js";

const { BIDIRECTIONAL, TO_DEVICE, FROM_DEVICE } = DmaDirection;

/** A checked mapping of `len` bytes of fresh memory, filled with a pattern the device can read. */
function mapped(r: Rig, len: number, dir: DmaDirection = BIDIRECTIONAL): { phys: number; addr: number } {
  const phys = freshPages(r.platform, Math.ceil(len / PAGE_SIZE));
  r.platform.memory.write(physAddr(phys), pattern(len, 3));
  const addr = dmaMapPhys(r.dev, physAddr(phys), len, dir);
  expect(dmaMappingError(r.dev, addr)).toBe(0);
  return { phys, addr };
}

function thrown(fn: () => unknown): DmaDebugError {
  try {
    fn();
  } catch (e) {
    if (e instanceof DmaDebugError) return e;
    throw e;
  }
  throw new Error("expected a DmaDebugError");
}

function checks(r: Rig): DmaDebugCheck[] {
  return r.kernel.debugReports().map((x) => x.check);
}

interface UnmapCase {
  readonly name: string;
  readonly check: DmaDebugCheck;
  readonly wording: RegExp;
  /** The misuse, given a live checked mapping of 4096 bytes BIDIRECTIONAL (or `dir`). */
  readonly misuse: (dev: DmaDevice, addr: number) => void;
  readonly dir?: DmaDirection;
}

const unmapCases: UnmapCase[] = [
  {
    name: "unmap of DMA_MAPPING_ERROR",
    check: "unmap-invalid-address",
    wording: /device driver tries to free an invalid DMA memory address/,
    misuse: (dev) => {
      dmaUnmapPhys(dev, DMA_MAPPING_ERROR, 4096, BIDIRECTIONAL);
    },
  },
  {
    name: "unmap of an address never mapped",
    check: "unmap-not-mapped",
    wording: /device driver tries to free DMA memory it has not allocated \[device address=0x[0-9a-f]{16}\] \[size=4096 bytes\]/,
    misuse: (dev, addr) => {
      dmaUnmapPhys(dev, dmaAddr(addr + 64 * PAGE_SIZE), 4096, BIDIRECTIONAL);
    },
  },
  {
    name: "unmap with a different size",
    check: "unmap-size-mismatch",
    wording: /device driver frees DMA memory with different size .*\[map size=4096 bytes\] \[unmap size=2048 bytes\]/,
    misuse: (dev, addr) => {
      dmaUnmapPhys(dev, dmaAddr(addr), 2048, BIDIRECTIONAL);
    },
  },
  {
    name: "unmap with a different direction",
    check: "unmap-direction-mismatch",
    wording: /device driver frees DMA memory with different direction .*\[mapped with DMA_BIDIRECTIONAL\] \[unmapped with DMA_TO_DEVICE\]/,
    misuse: (dev, addr) => {
      dmaUnmapPhys(dev, dmaAddr(addr), 4096, TO_DEVICE);
    },
  },
];

describe("dma-debug: unmap checks", () => {
  for (const c of unmapCases) {
    it(`${c.name}: "throw" reports ${c.check} and leaves the mapping usable and correctly unmappable`, () => {
      const r = rig();
      const { phys, addr } = mapped(r, 4096);
      const err = thrown(() => {
        c.misuse(r.dev, addr);
      });
      expect(err.report.check).toBe(c.check);
      expect(err.report.device).toBe(r.dev.bdf);
      expect(err.message).toMatch(c.wording);
      expect(err.message).toContain(`[check ${c.check}]`);
      // Nothing was unmapped: the device still reads the buffer and dma-debug still tracks it.
      expect(r.dev.domain!.iovaToPhys(iova(addr))).toBe(phys);
      expect(r.ep.dmaRead(unsafeDmaAddr(addr), 4096)).toEqual(pattern(4096, 3));
      expect(r.kernel.debug.entries(r.dev.bdf)).toHaveLength(1);
      dmaUnmapPhys(r.dev, dmaAddr(addr), 4096, BIDIRECTIONAL);
      expect(r.dev.domain!.iovaToPhys(iova(addr))).toBeUndefined();
      expect(r.kernel.debug.entries(r.dev.bdf)).toHaveLength(0);
      expect(checks(r)).toEqual([c.check]);
    });

    it(`${c.name}: "collect" records ${c.check} and carries on`, () => {
      const r = rig({ kernel: { debug: "collect" } });
      const { addr } = mapped(r, 4096);
      const m = moved(r.platform, () => {
        c.misuse(r.dev, addr);
      });
      expect(checks(r)).toEqual([c.check]);
      expect(r.kernel.debugReports()[0]!.message).toMatch(c.wording);
      expect(m.get(Counter.DmaDebugErrors)).toBe(1);
    });
  }

  it("a mapping whose error was never checked is reported at unmap, and still unmapped", () => {
    const r = rig();
    const phys = freshPages(r.platform, 1);
    const addr = dmaMapPhys(r.dev, physAddr(phys), 4096, BIDIRECTIONAL);
    const err = thrown(() => {
      dmaUnmapPhys(r.dev, addr, 4096, BIDIRECTIONAL);
    });
    expect(err.report.check).toBe("mapping-error-not-checked");
    expect(err.message).toMatch(/device driver failed to check map error \[device address=0x[0-9a-f]{16}\] \[size=4096 bytes\] \[mapped as phy\]/);
    // "throw" stops before anything changed: checking now and unmapping again works.
    expect(r.dev.domain!.iovaToPhys(iova(addr))).toBe(phys);
    dmaMappingError(r.dev, addr);
    dmaUnmapPhys(r.dev, addr, 4096, BIDIRECTIONAL);
    expect(r.dev.domain!.iovaToPhys(iova(addr))).toBeUndefined();
  });

  it('"collect" unmaps anyway and records every finding of one bad unmap', () => {
    const r = rig({ kernel: { debug: "collect" } });
    const phys = freshPages(r.platform, 1);
    const addr = dmaMapPhys(r.dev, physAddr(phys), 4096, BIDIRECTIONAL);
    dmaUnmapPhys(r.dev, addr, 4096, FROM_DEVICE);
    expect(checks(r)).toEqual(["unmap-direction-mismatch", "mapping-error-not-checked"]);
    expect(r.kernel.debug.entries(r.dev.bdf)).toHaveLength(0);
    expect(r.dev.domain!.iovaToPhys(iova(addr))).toBeUndefined();
  });

  it('"collect" undoes the mapping that was made, whatever size the bad unmap passes', () => {
    for (const iommuMode of ["strict", "off"] as const) {
      const r = rig({ kernel: { debug: "collect", iommuMode } });
      const phys = iommuMode === "off" ? 5 * GiB : freshPages(r.platform, 4); // "off": a bounced mapping
      const addr = dmaMapPhys(r.dev, physAddr(phys), 2 * PAGE_SIZE, BIDIRECTIONAL);
      dmaMappingError(r.dev, addr);
      dmaUnmapPhys(r.dev, addr, 4 * PAGE_SIZE, BIDIRECTIONAL);
      expect(checks(r)).toEqual(["unmap-size-mismatch"]);
      if (iommuMode === "strict") expect(r.dev.domain!.mappedBytes).toBe(0);
      else expect(r.kernel.swiotlb!.stats.used).toBe(0);
      // The allocator is intact: the same sizes map again without a warning.
      const again = dmaMapPhys(r.dev, physAddr(phys), 4 * PAGE_SIZE, BIDIRECTIONAL);
      expect(dmaMappingError(r.dev, again)).toBe(0);
      dmaUnmapPhys(r.dev, again, 4 * PAGE_SIZE, BIDIRECTIONAL);
      expect(checks(r)).toEqual(["unmap-size-mismatch"]);
    }
  });

  it('"off" checks nothing', () => {
    const r = rig({ kernel: { debug: "off" } });
    const phys = freshPages(r.platform, 1);
    const addr = dmaMapPhys(r.dev, physAddr(phys), 4096, BIDIRECTIONAL);
    dmaUnmapPhys(r.dev, addr, 4096, FROM_DEVICE);
    expect(r.kernel.debugReports()).toHaveLength(0);
    expect(r.dev.domain!.iovaToPhys(iova(addr))).toBeUndefined();
  });
});

interface SyncCase {
  readonly name: string;
  /** What "throw" stops at: the first finding. */
  readonly check: DmaDebugCheck;
  /** Every finding, as "collect" records them; default [check]. */
  readonly all?: readonly DmaDebugCheck[];
  readonly wording: RegExp;
  readonly dir: DmaDirection;
  readonly misuse: (dev: DmaDevice, addr: number) => void;
}

const syncCases: SyncCase[] = [
  {
    name: "sync of memory never mapped",
    check: "sync-not-mapped",
    wording: /device driver tries to sync DMA memory it has not allocated/,
    dir: BIDIRECTIONAL,
    misuse: (dev, addr) => {
      dmaSyncSingleForCpu(dev, dmaAddr(addr + 64 * PAGE_SIZE), 64, BIDIRECTIONAL);
    },
  },
  {
    name: "sync beyond the end of the mapping",
    check: "sync-out-of-range",
    wording: /device driver syncs DMA memory outside allocated range .*\[allocation size=4096 bytes\] \[sync offset\+size=4160\]/,
    dir: BIDIRECTIONAL,
    misuse: (dev, addr) => {
      dmaSyncSingleForCpu(dev, dmaAddr(addr + 64), 4096, BIDIRECTIONAL);
    },
  },
  {
    name: "sync with another direction",
    check: "sync-direction-mismatch",
    wording: /device driver syncs DMA memory with different direction .*\[mapped with DMA_FROM_DEVICE\] \[synced with DMA_BIDIRECTIONAL\]/,
    dir: FROM_DEVICE,
    misuse: (dev, addr) => {
      dmaSyncSingleForCpu(dev, dmaAddr(addr), 4096, BIDIRECTIONAL);
    },
  },
  {
    name: "a device-read-only buffer synced for the CPU as if the device wrote it",
    check: "sync-direction-mismatch",
    all: ["sync-direction-mismatch", "sync-device-read-only-for-cpu"],
    wording: /device driver syncs device read-only DMA memory for cpu .*\[mapped with DMA_TO_DEVICE\] \[synced with DMA_FROM_DEVICE\]/,
    dir: TO_DEVICE,
    misuse: (dev, addr) => {
      dmaSyncSingleForCpu(dev, dmaAddr(addr), 4096, FROM_DEVICE);
    },
  },
  {
    name: "a device-write-only buffer synced for the device as if the device read it",
    check: "sync-direction-mismatch",
    all: ["sync-direction-mismatch", "sync-device-write-only-for-device"],
    wording: /device driver syncs device write-only DMA memory to device .*\[mapped with DMA_FROM_DEVICE\] \[synced with DMA_BIDIRECTIONAL\]/,
    dir: FROM_DEVICE,
    misuse: (dev, addr) => {
      dmaSyncSingleForDevice(dev, dmaAddr(addr), 4096, BIDIRECTIONAL);
    },
  },
];

describe("dma-debug: sync checks", () => {
  for (const c of syncCases) {
    it(`${c.name}: "throw" reports ${c.check} before any data moves`, () => {
      const r = rig({ kernel: { iommuMode: "off", devices: { [DEV]: { coherent: false } } } });
      const { phys, addr } = mapped(r, 4096, c.dir);
      const m = moved(r.platform, () =>
        thrown(() => {
          c.misuse(r.dev, addr);
        }),
      );
      expect(m.result.report.check).toBe(c.check);
      if (c.all === undefined) expect(m.result.message).toMatch(c.wording);
      expect(m.get(Counter.DmaSyncCalls)).toBe(0);
      expect(m.get(Counter.CacheLinesInvalidated) + m.get(Counter.CacheLinesWrittenBack)).toBe(0);
      dmaUnmapPhys(r.dev, dmaAddr(addr), 4096, c.dir);
      expect(r.kernel.debug.entries()).toHaveLength(0);
      expect(phys).toBeGreaterThan(0);
    });

    it(`${c.name}: "collect" records ${c.check}`, () => {
      const r = rig({ kernel: { debug: "collect" } });
      const { addr } = mapped(r, 4096, c.dir);
      c.misuse(r.dev, addr);
      expect(checks(r)).toEqual(c.all ?? [c.check]);
      expect(r.kernel.debugReports().at(-1)!.message).toMatch(c.wording);
    });
  }

  it('"collect": a sync past the end of a bounced mapping moves only the part inside it, like swiotlb\'s clamp', () => {
    const r = rig({ kernel: { debug: "collect", iommuMode: "off" } });
    const phys = 5 * GiB;
    const addr = dmaMapPhys(r.dev, physAddr(phys), 4096, BIDIRECTIONAL);
    dmaMappingError(r.dev, addr);
    r.ep.dmaWrite(addr, pattern(4096, 7));
    const m = moved(r.platform, () => {
      dmaSyncSingleForCpu(r.dev, dmaAddr(addr + 2048), 4096, FROM_DEVICE);
    });
    expect(checks(r)).toEqual(["sync-out-of-range"]);
    expect(m.get(Counter.SwiotlbBounceBytes)).toBe(2048);
    expect(r.platform.memory.read(physAddr(phys + 2048), 2048)).toEqual(pattern(4096, 7).subarray(2048));
    dmaSyncSingleForDevice(r.dev, dmaAddr(addr + 4000), 200, TO_DEVICE);
    expect(checks(r)).toEqual(["sync-out-of-range", "sync-out-of-range"]);
    dmaUnmapPhys(r.dev, addr, 4096, BIDIRECTIONAL);
    expect(r.kernel.swiotlb!.stats.used).toBe(0);
  });

  it("a sync for DMA_NONE is bad input", () => {
    const r = rig();
    const { addr } = mapped(r, 4096);
    expect(() => {
      dmaSyncSingleForCpu(r.dev, dmaAddr(addr), 64, DmaDirection.NONE);
    }).toThrow(DmaInputError);
    expect(() => {
      dmaSyncSingleForDevice(r.dev, dmaAddr(addr), 64, DmaDirection.NONE);
    }).toThrow(/dma_sync_single_for_device: dir = 0x3 is invalid/);
  });

  it("syncing for the CPU a mapping the device only reads, with DMA_TO_DEVICE, is allowed (it does nothing)", () => {
    const r = rig({ kernel: { debug: "collect" } });
    const tx = mapped(r, 4096, TO_DEVICE);
    dmaSyncSingleForCpu(r.dev, dmaAddr(tx.addr), 4096, TO_DEVICE);
    const rx = mapped(r, 4096, FROM_DEVICE);
    dmaSyncSingleForDevice(r.dev, dmaAddr(rx.addr), 4096, FROM_DEVICE);
    expect(checks(r)).toEqual([]);
  });

  it("a correct partial sync inside the mapping reports nothing", () => {
    const r = rig();
    const rx = mapped(r, 4096, FROM_DEVICE);
    dmaSyncSingleForCpu(r.dev, dmaAddr(rx.addr + 1024), 1024, FROM_DEVICE);
    dmaSyncSingleForCpu(r.dev, dmaAddr(rx.addr + 3072), 1024, FROM_DEVICE); // ends exactly at the end
    dmaUnmapPhys(r.dev, dmaAddr(rx.addr), 4096, FROM_DEVICE);
    // A bidirectional mapping may be synced with any direction.
    const bidi = mapped(r, 4096, BIDIRECTIONAL);
    dmaSyncSingleForDevice(r.dev, dmaAddr(bidi.addr), 4096, TO_DEVICE);
    dmaSyncSingleForCpu(r.dev, dmaAddr(bidi.addr), 4096, FROM_DEVICE);
    dmaUnmapPhys(r.dev, dmaAddr(bidi.addr), 4096, BIDIRECTIONAL);
    expect(r.kernel.debugReports()).toHaveLength(0);
  });
});

describe("dma-debug: map checks", () => {
  for (const [flag, check, wording] of [
    [PageFlag.STACK, "map-stack", /device driver maps memory from stack \[addr=0x[0-9a-f]+\]/],
    [PageFlag.KERNEL_TEXT, "map-kernel-text", /device driver maps memory from kernel text or rodata \[addr=0x[0-9a-f]+\] \[len=256\]/],
  ] as const) {
    it(`${check}: "throw" refuses the map before anything is mapped`, () => {
      const r = rig();
      const phys = freshPages(r.platform, 1);
      r.platform.memory.pages.setFlags(phys / PAGE_SIZE, 1, flag);
      const m = moved(r.platform, () => thrown(() => dmaMapPhys(r.dev, physAddr(phys + 128), 256, TO_DEVICE)));
      expect(m.result.report.check).toBe(check);
      expect(m.result.message).toMatch(wording);
      expect(m.get(Counter.DmaMapCalls) + m.get(Counter.IommuMapCalls)).toBe(0);
      expect(r.dev.domain!.mappedBytes).toBe(0);
      expect(r.kernel.debug.entries()).toHaveLength(0);
    });

    it(`${check}: "collect" records it and maps like the kernel does`, () => {
      const r = rig({ kernel: { debug: "collect" } });
      const phys = freshPages(r.platform, 1);
      r.platform.memory.pages.setFlags(phys / PAGE_SIZE, 1, flag);
      const addr = dmaMapPhys(r.dev, physAddr(phys + 128), 256, TO_DEVICE);
      expect(dmaMappingError(r.dev, addr)).toBe(0);
      expect(checks(r)).toEqual([check]);
      expect(r.dev.domain!.iovaToPhys(iova(addr))).toBe(phys + 128);
    });
  }

  it("map-invalid-address: memory without a struct page mapped as if it were RAM", () => {
    const PEER = "0000:03:00.0";
    const r = rig({ endpoints: [{ bdf: PEER, bars: [{ size: 1 << 20 }] }] });
    const bar = r.platform.endpoint(PEER).bars[0]!;
    for (const phys of [bar.phys, 16 * GiB /* a hole */]) {
      const m = moved(r.platform, () => thrown(() => dmaMapPhys(r.dev, physAddr(phys), 256, TO_DEVICE)));
      expect(m.result.report.check).toBe("map-invalid-address");
      expect(m.result.message).toMatch(/device driver maps memory that is not RAM \[addr=0x[0-9a-f]+\] \[len=256\]/);
      expect(m.get(Counter.DmaMapCalls)).toBe(0);
    }
    expect(r.dev.domain!.mappedBytes).toBe(0);
    // The same BAR with DMA_ATTR_MMIO is a legitimate mapping.
    const addr = dmaMapPhys(r.dev, bar.phys, 256, TO_DEVICE, DMA_ATTR_MMIO);
    expect(dmaMappingError(r.dev, addr)).toBe(0);
    expect(r.dev.domain!.iovaToPhys(iova(addr))).toBe(bar.phys);
  });

  it("overlapping cachelines of two active mappings are reported, and not for TO_DEVICE or SKIP_CPU_SYNC", () => {
    const r = rig({ kernel: { debug: "collect" } });
    const phys = freshPages(r.platform, 1);
    const a = dmaMapPhys(r.dev, physAddr(phys), 100, FROM_DEVICE); // lines 0 and 1
    dmaMappingError(r.dev, a);
    expect(checks(r)).toEqual([]);
    const b = dmaMapPhys(r.dev, physAddr(phys + 100), 28, FROM_DEVICE); // line 1 again
    dmaMappingError(r.dev, b);
    expect(checks(r)).toEqual(["cacheline-overlap"]);
    expect(r.kernel.debugReports()[0]!.message).toMatch(/cacheline tracking EEXIST, overlapping mappings aren't supported/);
    const c = dmaMapPhys(r.dev, physAddr(phys + 64), 64, TO_DEVICE);
    dmaMappingError(r.dev, c);
    const d = dmaMapPhys(r.dev, physAddr(phys + 32), 64, BIDIRECTIONAL, DMA_ATTR_SKIP_CPU_SYNC);
    dmaMappingError(r.dev, d);
    expect(checks(r)).toEqual(["cacheline-overlap"]);
    // A mapping in the next cacheline does not overlap anything.
    const e = dmaMapPhys(r.dev, physAddr(phys + 128), 64, FROM_DEVICE);
    dmaMappingError(r.dev, e);
    expect(checks(r)).toEqual(["cacheline-overlap"]);
  });

  it("overlap is not reported when small kmalloc buffers bounce (CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC)", () => {
    const r = rig({ kernel: { debug: "collect", kmallocBounce: true } });
    const phys = freshPages(r.platform, 1);
    for (const [off, len] of [[0, 100], [100, 28]] as const) {
      const a = dmaMapPhys(r.dev, physAddr(phys + off), len, FROM_DEVICE);
      expect(dmaMappingError(r.dev, a)).toBe(0);
    }
    expect(checks(r)).toEqual([]);
  });

  it("overlap: \"throw\" refuses the second map; once the first is unmapped the same map is accepted", () => {
    const r = rig();
    const phys = freshPages(r.platform, 1);
    const a = dmaMapPhys(r.dev, physAddr(phys), 96, FROM_DEVICE);
    dmaMappingError(r.dev, a);
    expect(thrown(() => dmaMapPhys(r.dev, physAddr(phys + 96), 32, FROM_DEVICE)).report.check).toBe("cacheline-overlap");
    expect(r.kernel.debug.entries()).toHaveLength(1);
    dmaUnmapPhys(r.dev, a, 96, FROM_DEVICE);
    const b = dmaMapPhys(r.dev, physAddr(phys + 96), 32, FROM_DEVICE);
    expect(dmaMappingError(r.dev, b)).toBe(0);
    dmaUnmapPhys(r.dev, b, 32, FROM_DEVICE);
  });
});

describe("dma-debug: driver unbind", () => {
  it("reports mappings still held as a leak, forgets them, and refuses calls on the unbound device", () => {
    const r = rig({ kernel: { debug: "collect" } });
    const { addr } = mapped(r, 4096, TO_DEVICE);
    const report = r.kernel.unbind(r.dev);
    expect(report.device).toBe(r.dev.bdf);
    expect(report.leakedMappings.map((e) => [e.dmaAddr, e.size, e.dir, e.type])).toEqual([[addr, 4096, TO_DEVICE, "phy"]]);
    expect(checks(r)).toEqual(["leak"]);
    expect(r.kernel.debugReports()[0]!.message).toMatch(
      /device driver has pending DMA allocations while released from device \[count=1\] One of leaked entries details: \[device address=0x[0-9a-f]{16}\] \[size=4096 bytes\] \[mapped with DMA_TO_DEVICE\] \[mapped as phy\]/,
    );
    expect(r.kernel.debug.entries(r.dev.bdf)).toHaveLength(0);
    expect(() => dmaMapPhys(r.dev, unsafePhysAddr(0x10000), 64, TO_DEVICE)).toThrow(DmaInputError);
    expect(() => {
      dmaUnmapPhys(r.dev, dmaAddr(addr), 4096, TO_DEVICE);
    }).toThrow(/this one was unbound/);
    // A fresh lookup probes the device again; the stale handle cannot unbind it.
    const again = r.kernel.device(r.dev.bdf);
    expect(again).not.toBe(r.dev);
    expect(again.bound).toBe(true);
    const live = mapped({ ...r, dev: again }, 4096, TO_DEVICE);
    expect(() => r.kernel.unbind(r.dev)).toThrow(DmaInputError);
    expect(again.bound).toBe(true);
    expect(r.kernel.debug.entries(again.bdf)).toHaveLength(1);
    dmaUnmapPhys(again, dmaAddr(live.addr), 4096, TO_DEVICE);
    // A device of another kernel is refused too.
    const other = rig();
    expect(() => r.kernel.unbind(other.dev)).toThrow(/unbind: dev = "0000:01:00.0" is invalid: expected a device this kernel handed out/);
    expect(other.dev.bound).toBe(true);
  });

  it("a clean unbind reports nothing", () => {
    const r = rig();
    const { addr } = mapped(r, 4096, TO_DEVICE);
    dmaUnmapPhys(r.dev, dmaAddr(addr), 4096, TO_DEVICE);
    const report = r.kernel.unbind(r.dev);
    expect(report.leakedMappings).toEqual([]);
    expect(report.leakedIovaStates).toBe(0);
    expect(r.kernel.debugReports()).toHaveLength(0);
  });

  it('"throw" mode throws the leak report at unbind', () => {
    const r = rig();
    const { addr } = mapped(r, 4096, TO_DEVICE);
    expect(thrown(() => r.kernel.unbind(r.dev)).report.check).toBe("leak");
    // The throw stops the unbind: the driver can still clean up and unbind.
    expect(r.dev.bound).toBe(true);
    dmaUnmapPhys(r.dev, dmaAddr(addr), 4096, TO_DEVICE);
    expect(r.kernel.unbind(r.dev).leakedMappings).toEqual([]);
    expect(r.dev.bound).toBe(false);
  });
});
