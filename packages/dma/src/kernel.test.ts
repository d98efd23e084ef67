import { describe, expect, it } from "vitest";
import { GiB, PAGE_SIZE, physAddr } from "@dmasim/memory";
import { PcieAccessError, createPlatform } from "@dmasim/pcie-p2p";
import { DmasimInputError } from "@dmasim/trace";
import { Counter } from "./counters.js";
import {
  DMA_ATTR_MMIO,
  DMA_ATTR_NO_WARN,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_BIT_MASK,
  DmaConfigError,
  DmaOptionsError,
  DmaInputError,
  DmaDirection,
  Errno,
  createDmaKernel,
  dmaDirectionName,
  errnoName,
  dmaMapPhys,
  dmaMappingError,
  dmaUnmapPhys,
} from "./index.js";
import type { DmaKernelOptions } from "./index.js";
import { DEV, UNTRUSTED, freshPages, moved, rig } from "./test-fixtures.js";
import { dmaAddr } from "./constants.js";

const THIRD = "0000:03:00.0";

function platform() {
  return createPlatform({ memory: { ramBytes: 1 * GiB }, iommu: {}, endpoints: [{ bdf: DEV }, { bdf: UNTRUSTED, untrusted: true }] });
}

describe("createDmaKernel options", () => {
  const bad: [string, DmaKernelOptions, RegExp][] = [
    ["iommuMode", { iommuMode: "fast" as never }, /iommuMode = "fast" is invalid/],
    ["cpus 0", { cpus: 0 }, /cpus = 0x0 is invalid: expected an integer from 1 to 1024/],
    ["cpus 1.5", { cpus: 1.5 }, /cpus = 1.5 is invalid/],
    ["debug", { debug: "loud" as never }, /debug = "loud" is invalid/],
    ["swiotlb bytes", { swiotlb: { bytes: -1 } }, /swiotlb.bytes = -1 is invalid/],
    ["swiotlb shape", { swiotlb: 5 as never }, /swiotlb = 0x5 is invalid: expected false or/],
    ["swiotlb force", { swiotlb: { force: "yes" as never } }, /swiotlb.force = "yes" is invalid/],
    ["swiotlb too large", { swiotlb: { bytes: 2 * GiB } }, /swiotlb.bytes = 2147483648 cannot be allocated/],
    ["kmallocBounce", { kmallocBounce: 1 as never }, /kmallocBounce = 0x1 is invalid/],
    ["cacheLines", { cacheLines: 0 }, /cacheLines = 0x0 is invalid/],
    ["unknown device", { devices: { "0000:09:00.0": {} } }, /devices\["0000:09:00.0"\] = "0000:09:00.0" is invalid: expected the BDF of an endpoint of the platform \(0000:01:00.0, 0000:02:00.0\)/],
    ["device mask bits", { devices: { [DEV]: { dmaMaskBits: 65 } } }, /devices\["0000:01:00.0"\].dmaMaskBits = 0x41 is invalid: expected an integer number of bits/],
    ["device coherent", { devices: { [DEV]: { coherent: "no" as never } } }, /\.coherent = "no" is invalid: expected true or false/],
    ["device boundary", { devices: { [DEV]: { segBoundaryMask: 0x1000 } } }, /\.segBoundaryMask = 0x1000 is invalid: expected 2\^n - 1/],
    ["device option typo", { devices: { [DEV]: { coherant: false } as never } }, /devices\["0000:01:00.0"\].coherant = false is invalid: expected no such field \(allowed: coherent, dmaMaskBits/],
    ["cost override", { costProfile: { PteWrites: -2 } }, /costProfile.PteWrites = -2 is invalid/],
  ];
  for (const [what, options, message] of bad) {
    it(`refuses a bad ${what} with DmaConfigError before allocating anything`, () => {
      const p = platform();
      const allocated = p.memory.allocator.allocatedPages;
      let err: unknown;
      try {
        createDmaKernel(p, options);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DmaConfigError);
      expect((err as DmaConfigError).code).toBe("EINVAL");
      expect((err as Error).message).toMatch(message);
      expect(p.memory.allocator.allocatedPages).toBe(allocated);
      // The platform is still usable by a kernel with good options.
      expect(createDmaKernel(p).device(DEV).ops).toBe("iommu");
    });
  }

  it("a typo in an option name is an error, not a silent default", () => {
    expect(() => createDmaKernel(platform(), { iommumode: "lazy" } as never)).toThrow(/options.iommumode = "lazy" is invalid: expected no such field \(allowed: iommuMode,/);
    expect(() => createDmaKernel(platform(), { iommumode: "lazy" } as never)).toThrow(DmaOptionsError);
  });

  it("reports every issue at once, each with its path from the options", () => {
    let err: unknown;
    try {
      createDmaKernel(platform(), { cpus: 0, swiotlb: { force: 1 }, devices: { [DEV]: { dmaMaskBits: 65, coherant: true }, "0000:09:00.0": {} }, costProfile: { PteWrite: 1 } } as never);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DmaOptionsError);
    expect(err).toBeInstanceOf(DmaConfigError);
    expect(err).toBeInstanceOf(DmasimInputError);
    expect((err as DmaOptionsError).issues.map((i) => i.path)).toEqual([
      "swiotlb.force",
      "cpus",
      "costProfile.PteWrite",
      'devices["0000:01:00.0"].dmaMaskBits',
      'devices["0000:01:00.0"].coherant',
      'devices["0000:09:00.0"]',
    ]);
    expect((err as Error).message.split("\n")).toHaveLength(6);
  });

  it("defaults: strict iommu-dma, 4 CPUs, a 64 MiB swiotlb pool, dma-debug throwing", () => {
    const kernel = createDmaKernel(platform());
    expect(kernel.iommuMode).toBe("strict");
    expect(kernel.cpus).toBe(4);
    expect(kernel.swiotlb!.end - kernel.swiotlb!.start).toBe(64 * 1024 * 1024);
    expect(kernel.swiotlbForce).toBe(false);
    expect(kernel.debug.mode).toBe("throw");
    const dev = kernel.device(DEV);
    expect(dev.ops).toBe("iommu");
    expect(dev.strict).toBe(true);
    expect(dev.coherent).toBe(true);
    expect(dev.dmaMask).toBe(DMA_BIT_MASK(32));
  });

  it("swiotlb: false means no pool and nothing allocated for one", () => {
    const p = platform();
    const kernel = createDmaKernel(p, { swiotlb: false });
    expect(kernel.swiotlb).toBeUndefined();
    expect(p.memory.allocator.allocatedPages).toBe(0);
  });
});

describe("devices", () => {
  it("applies per-device options from createDmaKernel and from the first lookup", () => {
    const { kernel } = rig({ endpoints: [{ bdf: THIRD }], kernel: { devices: { [DEV]: { coherent: false, dmaMaskBits: 64, maxSegmentSize: 1 << 20 } } } });
    const dev = kernel.device(DEV);
    expect(dev.coherent).toBe(false);
    expect(dev.dmaMask).toBe(DMA_BIT_MASK(64));
    expect(dev.maxSegmentSize).toBe(1 << 20);
    expect(kernel.devices()).not.toContainEqual(expect.objectContaining({ bdf: THIRD }));
    const other = kernel.device(THIRD, { minAlignMask: 0xfff, busOffset: 0 });
    expect(other.minAlignMask).toBe(0xfff);
    expect(other.coherent).toBe(true);
    expect(kernel.device(THIRD)).toBe(other);
    expect(kernel.devices()).toContain(other);
    expect(kernel.devices()).toContain(dev);
  });

  it("refuses options on a second lookup, unknown BDFs and bad options with DmaConfigError", () => {
    const { kernel } = rig({ endpoints: [{ bdf: THIRD }] });
    expect(() => kernel.device(DEV, { coherent: false })).toThrow(/device 0000:01:00.0 already exists/);
    expect(() => kernel.device("0000:09:00.0")).toThrow(DmaConfigError);
    expect(() => kernel.device(THIRD, { dmaMaskBits: -1 })).toThrow(/devices\["0000:03:00.0"\].dmaMaskBits = -1 is invalid/);
    // The refused lookup probed nothing: the device can still be created with good options.
    expect(kernel.device(THIRD, { dmaMaskBits: 40 }).dmaMask).toBe(DMA_BIT_MASK(40));
  });

  it("chooses the DMA ops from the IOMMU mode and the device's trust", () => {
    const strict = rig({ kernel: { iommuMode: "strict" } }).kernel;
    expect([strict.device(DEV).ops, strict.device(DEV).domain?.type]).toEqual(["iommu", "paging"]);
    const lazy = rig({ kernel: { iommuMode: "lazy" } }).kernel;
    expect([lazy.device(DEV).strict, lazy.device(UNTRUSTED).strict]).toEqual([false, true]);
    const pt = rig({ kernel: { iommuMode: "passthrough" } }).kernel;
    expect([pt.device(DEV).ops, pt.device(DEV).domain?.type]).toEqual(["direct", "identity"]);
    // Untrusted devices keep a strict DMA domain even in passthrough.
    expect([pt.device(UNTRUSTED).ops, pt.device(UNTRUSTED).strict]).toEqual(["iommu", true]);
    const off = rig({ kernel: { iommuMode: "off" } }).kernel;
    expect([off.device(UNTRUSTED).ops, off.device(UNTRUSTED).domain]).toEqual(["direct", undefined]);
    const none = rig({ iommu: false }).kernel;
    expect([none.device(DEV).ops, none.device(DEV).domain]).toEqual(["direct", undefined]);
  });
});

describe("CPUs", () => {
  it("setCpu moves the caller and refuses CPUs that do not exist", () => {
    const { kernel } = rig({ kernel: { cpus: 2 } });
    expect(kernel.cpu).toBe(0);
    kernel.setCpu(1);
    expect(kernel.cpu).toBe(1);
    expect(() => {
      kernel.setCpu(2);
    }).toThrow(/cpu = 2 is invalid: expected an integer from 0 to 1/);
    expect(() => {
      kernel.setCpu(-1);
    }).toThrow(DmaConfigError);
    expect(kernel.cpu).toBe(1);
  });

  it("onCpu runs on the CPU and returns to the previous one, also when the callback throws", () => {
    const { kernel } = rig();
    kernel.setCpu(2);
    expect(kernel.onCpu(3, () => kernel.cpu * 10)).toBe(30);
    expect(kernel.cpu).toBe(2);
    expect(() =>
      kernel.onCpu(1, () => {
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(kernel.cpu).toBe(2);
    expect(() => kernel.onCpu(9, () => 0)).toThrow(DmaConfigError);
    expect(kernel.cpu).toBe(2);
  });

  it("an IOVA freed on one CPU is reused from that CPU's range cache, not by another CPU", () => {
    const { platform, kernel, dev } = rig();
    const phys = freshPages(platform, 1);
    const map = (): number => {
      const a = dmaMapPhys(dev, physAddr(phys), PAGE_SIZE, DmaDirection.TO_DEVICE);
      expect(dmaMappingError(dev, a)).toBe(0);
      return a;
    };
    const freed = kernel.onCpu(1, () => {
      const a = map();
      dmaUnmapPhys(dev, dmaAddr(a), PAGE_SIZE, DmaDirection.TO_DEVICE);
      return a;
    });
    const elsewhere = moved(platform, () => kernel.onCpu(0, map));
    expect(elsewhere.result).not.toBe(freed);
    expect(elsewhere.get(Counter.IovaAllocTree)).toBe(1);
    expect(elsewhere.get(Counter.IovaAllocCache)).toBe(0);
    const home = moved(platform, () => kernel.onCpu(1, map));
    expect(home.result).toBe(freed);
    expect(home.get(Counter.IovaAllocCache)).toBe(1);
    expect(home.get(Counter.IovaAllocTree)).toBe(0);
  });
});

describe("per-CPU swiotlb areas", () => {
  it("a bounce on a CPU takes its slots from that CPU's area", () => {
    const { kernel, dev } = rig({ kernel: { iommuMode: "off", cpus: 4 } });
    const pool = kernel.swiotlb!;
    const addr = kernel.onCpu(2, () => dmaMapPhys(dev, physAddr(5 * GiB), 4096, DmaDirection.TO_DEVICE));
    expect(dmaMappingError(dev, addr)).toBe(0);
    expect([0, 1, 2, 3].map((a) => pool.areaUsed(a))).toEqual([0, 0, 2, 0]);
    dmaUnmapPhys(dev, addr, 4096, DmaDirection.TO_DEVICE);
    expect(pool.areaUsed(2)).toBe(0);
  });
});

describe("kernel.flushAll", () => {
  it("drains the lazy flush queues now, so stale IOTLB entries stop translating", () => {
    const { platform, kernel, dev, ep } = rig({ kernel: { iommuMode: "lazy" } });
    const addr = dmaMapPhys(dev, physAddr(freshPages(platform, 1)), PAGE_SIZE, DmaDirection.TO_DEVICE);
    dmaMappingError(dev, addr);
    ep.dmaRead(addr, 8);
    dmaUnmapPhys(dev, addr, PAGE_SIZE, DmaDirection.TO_DEVICE);
    expect(() => ep.dmaRead(addr, 8)).not.toThrow(); // stale IOTLB entry
    const m = moved(platform, () => {
      kernel.flushAll();
    });
    expect(m.get(Counter.FlushQueueFlushes)).toBe(1);
    expect(() => ep.dmaRead(addr, 8)).toThrow(PcieAccessError);
  });
});

describe("the DMA API's vocabulary", () => {
  it("names directions and errnos as the kernel prints them", () => {
    expect(dmaDirectionName(DmaDirection.BIDIRECTIONAL)).toBe("DMA_BIDIRECTIONAL");
    expect(dmaDirectionName(DmaDirection.NONE)).toBe("DMA_NONE");
    expect(errnoName(-Errno.ENOMEM)).toBe("-ENOMEM");
    expect(errnoName(Errno.EOPNOTSUPP)).toBe("EOPNOTSUPP");
    expect(errnoName(-9999)).toBe("-9999");
  });

  it("DMA_BIT_MASK gives 2^n - 1, clamps above 53 bits and refuses nonsense", () => {
    expect(DMA_BIT_MASK(0)).toBe(0);
    expect(DMA_BIT_MASK(32)).toBe(0xffffffff);
    expect(DMA_BIT_MASK(52)).toBe(2 ** 52 - 1);
    expect(DMA_BIT_MASK(64)).toBe(Number.MAX_SAFE_INTEGER);
    expect(() => DMA_BIT_MASK(65)).toThrow(DmaInputError);
    expect(() => DMA_BIT_MASK(1.5)).toThrow(/DMA_BIT_MASK: n = 1.5 is invalid/);
  });

  it("the attribute bits are the kernel's", () => {
    expect([DMA_ATTR_SKIP_CPU_SYNC, DMA_ATTR_NO_WARN, DMA_ATTR_MMIO, DMA_ATTR_REQUIRE_COHERENT]).toEqual([1 << 5, 1 << 8, 1 << 10, 1 << 12]);
  });
});
