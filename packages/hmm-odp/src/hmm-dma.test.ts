import { DMA_MAPPING_ERROR, DmaDebugError, createDmaKernel } from "@dmasim/dma";
import { GiB, MiB, PAGE_SIZE, patternBytes, physAddr } from "@dmasim/memory";
import { PciP2pdmaMapType, createPlatform } from "@dmasim/pcie-p2p";
import { TestBdf, switchTopology } from "@dmasim/pcie-p2p/testing";
import { Counter } from "@dmasim/dma";
import { describe, expect, it } from "vitest";
import { HMM_PFN_DMA_MAPPED, HMM_PFN_P2PDMA_BUS, HMM_PFN_VALID, HMM_PFN_WRITE, HmmErrno } from "./constants.js";
import { DmirrorDevice } from "./dmirror.js";
import { HmmInputError } from "./errors.js";
import { HmmDmaMap, hmmDmaMapAlloc, hmmDmaMapFree, hmmDmaMapPfn, hmmDmaMapPfnRun, hmmDmaUnmapPfn, hmmP2pState } from "./hmm-dma.js";
import { MmSystem } from "./mm-system.js";
import { Mm } from "./mm.js";
import { InvalidationLog } from "./contract.js";
import { DEV0_BDF, hmmRig } from "./test-fixtures.js";
import { iova } from "@dmasim/iommu";

function counters(rig: { platform: { trace: { counters: { get(c: Counter): number } } } }, ...cs: Counter[]): number[] {
  return cs.map((c) => rig.platform.trace.counters.get(c));
}

describe("hmm_dma_map", () => {
  it("alloc reserves the IOVA of the whole range up front; map links and syncs one entry; unmap needs VALID and DMA_MAPPED", () => {
    const rig = hmmRig();
    const { dev0, sys, platform } = rig;
    const map = new HmmDmaMap();
    expect(hmmDmaMapAlloc(dev0, map, 16, PAGE_SIZE)).toBe(0);
    expect(map.state.size).toBe(16 * PAGE_SIZE);
    expect(map.dmaList).toBeUndefined();
    const pfn = sys.allocPage();
    platform.memory.write(physAddr(pfn * PAGE_SIZE), patternBytes(64, 5));
    map.pfns[3] = pfn;
    map.flags[3] = HMM_PFN_VALID | HMM_PFN_WRITE;
    const [l0, s0] = counters(rig, Counter.DmaIovaLinks, Counter.DmaIovaSyncs);
    const addr = hmmDmaMapPfn(dev0, map, 3, hmmP2pState());
    expect(addr).toBe(map.state.addr + 3 * PAGE_SIZE);
    expect(counters(rig, Counter.DmaIovaLinks, Counter.DmaIovaSyncs)).toEqual([(l0 ?? 0) + 1, (s0 ?? 0) + 1]);
    expect(map.flags[3]).toBe(HMM_PFN_VALID | HMM_PFN_WRITE | HMM_PFN_DMA_MAPPED);
    expect(platform.endpoint(DEV0_BDF).dmaRead(addr, 64)).toEqual(patternBytes(64, 5));
    // Already mapped (a permission resync): the same address, nothing linked.
    expect(hmmDmaMapPfn(dev0, map, 3, hmmP2pState())).toBe(addr);
    expect(counters(rig, Counter.DmaIovaLinks)[0]).toBe((l0 ?? 0) + 1);
    // Clearing VALID first leaks the mapping (upstream's pitfall): unmap refuses.
    map.flags[3] = HMM_PFN_DMA_MAPPED;
    expect(hmmDmaUnmapPfn(dev0, map, 3)).toBe(false);
    map.flags[3] = HMM_PFN_VALID | HMM_PFN_DMA_MAPPED;
    expect(hmmDmaUnmapPfn(dev0, map, 3)).toBe(true);
    expect(map.flags[3]).toBe(HMM_PFN_VALID);
    expect(dev0.domain?.iovaToPhys(iova(addr))).toBeUndefined();
    hmmDmaMapFree(dev0, map);
    expect(map.nrEntries).toBe(0);
  });

  it("the batched variant links a run and syncs once", () => {
    const rig = hmmRig();
    const { dev0, sys } = rig;
    const map = new HmmDmaMap();
    hmmDmaMapAlloc(dev0, map, 64, PAGE_SIZE);
    for (let i = 0; i < 64; i++) {
      map.pfns[i] = sys.allocPage();
      map.flags[i] = HMM_PFN_VALID;
    }
    const out = new Float64Array(64);
    const [l0, s0] = counters(rig, Counter.DmaIovaLinks, Counter.DmaIovaSyncs);
    expect(hmmDmaMapPfnRun(dev0, map, 0, 64, hmmP2pState(), out)).toBe(64);
    expect(counters(rig, Counter.DmaIovaLinks, Counter.DmaIovaSyncs)).toEqual([(l0 ?? 0) + 64, (s0 ?? 0) + 1]);
    for (let i = 0; i < 64; i++) {
      expect(out[i]).toBe(map.state.addr + i * PAGE_SIZE);
      expect(dev0.domain?.iovaToPhys(iova(out[i] ?? 0))).toBe((map.pfns[i] ?? 0) * PAGE_SIZE);
    }
  });

  it("a peer page the device cannot reach (PCI_P2PDMA_MAP_NOT_SUPPORTED) is DMA_MAPPING_ERROR and links nothing", () => {
    const platform = createPlatform(switchTopology({ hostBridgeP2p: "none", switchSpare: {}, bridgePeer: { bars: [{ size: 4 * MiB }] } }));
    const kernel = createDmaKernel(platform, { swiotlb: false, debug: "off" });
    const provider = platform.addP2pdmaProvider(TestBdf.BRIDGE_PEER, 0);
    const dev = kernel.device(TestBdf.SWITCH_SPARE);
    const map = new HmmDmaMap();
    expect(hmmDmaMapAlloc(dev, map, 2, PAGE_SIZE)).toBe(0);
    map.pfns[1] = provider.phys / PAGE_SIZE;
    map.flags[1] = HMM_PFN_VALID;
    const links = platform.trace.counters.get(Counter.DmaIovaLinks);
    expect(hmmDmaMapPfn(dev, map, 1, hmmP2pState())).toBe(DMA_MAPPING_ERROR);
    const out = new Float64Array(1);
    expect(hmmDmaMapPfnRun(dev, map, 1, 1, hmmP2pState(), out)).toBe(0);
    expect(out[0]).toBe(DMA_MAPPING_ERROR);
    expect(platform.trace.counters.get(Counter.DmaIovaLinks)).toBe(links);
    expect(map.flags[1]).toBe(HMM_PFN_VALID);
    expect(dev.domain?.iovaToPhys(iova(map.state.addr + PAGE_SIZE))).toBeUndefined();
  });

  it("-EOPNOTSUPP for a device that needs syncs (non-coherent) or bounces (untrusted); no IOVA taken", () => {
    const platform = createPlatform({ memory: { ramBytes: 1 * GiB }, iommu: {}, endpoints: [{ bdf: "0000:01:00.0" }, { bdf: "0000:02:00.0", untrusted: true }] });
    const kernel = createDmaKernel(platform, { swiotlb: false, devices: { "0000:01:00.0": { coherent: false } } });
    for (const bdf of ["0000:01:00.0", "0000:02:00.0"]) {
      const map = new HmmDmaMap();
      expect(hmmDmaMapAlloc(kernel.device(bdf), map, 4, PAGE_SIZE)).toBe(-HmmErrno.EOPNOTSUPP);
      expect(map.state.size).toBe(0);
      expect(map.nrEntries).toBe(0);
    }
  });

  it("without an IOMMU and with dma-debug: a DMA address per entry in dma_list, dma_map_phys per page", () => {
    const platform = createPlatform({ memory: { ramBytes: 1 * GiB }, endpoints: [{ bdf: "0000:01:00.0" }] });
    const kernel = createDmaKernel(platform, { swiotlb: false, devices: { "0000:01:00.0": { dmaMaskBits: 64 } } });
    const dev = kernel.device("0000:01:00.0");
    const sys = new MmSystem(kernel);
    const map = new HmmDmaMap();
    expect(hmmDmaMapAlloc(dev, map, 4, PAGE_SIZE)).toBe(0);
    expect(map.state.size).toBe(0);
    expect(map.dmaList).toHaveLength(4);
    map.pfns[1] = sys.allocPage();
    map.flags[1] = HMM_PFN_VALID;
    const addr = hmmDmaMapPfn(dev, map, 1, hmmP2pState());
    expect(addr).toBe((map.pfns.at(1) ?? 0) * PAGE_SIZE);
    expect(map.dmaList?.[1]).toBe(addr);
    expect(hmmDmaUnmapPfn(dev, map, 1)).toBe(true);
    hmmDmaMapFree(dev, map);
    expect(kernel.debugReports()).toHaveLength(0);
  });

  it("bad input is refused with typed errors and changes nothing", () => {
    const { dev0, dev1 } = hmmRig();
    const map = new HmmDmaMap();
    expect(() => hmmDmaMapAlloc(dev0, map, 0, PAGE_SIZE)).toThrow(HmmInputError);
    expect(() => hmmDmaMapAlloc(dev0, map, 4, 3000)).toThrow(HmmInputError);
    hmmDmaMapAlloc(dev0, map, 4, PAGE_SIZE);
    expect(() => hmmDmaMapPfn(dev0, map, 4, hmmP2pState())).toThrow(HmmInputError);
    expect(() => hmmDmaMapPfn(dev1, map, 0, hmmP2pState())).toThrow(HmmInputError);
    expect(map.flags.every((f) => f === 0)).toBe(true);
  });

  it("the checker reports a map outside the driver lock and a map of an entry without VALID", () => {
    const rig = hmmRig();
    const { dev0, sys } = rig;
    const map = new HmmDmaMap();
    hmmDmaMapAlloc(dev0, map, 4, PAGE_SIZE);
    map.pfns[0] = sys.allocPage();
    expect(() => hmmDmaMapPfn(dev0, map, 0, hmmP2pState())).toThrow(DmaDebugError);
    map.flags[0] = HMM_PFN_VALID;
    const d = rig.open(0);
    map.userLock = d.mutex;
    expect(() => hmmDmaMapPfn(dev0, map, 0, hmmP2pState())).toThrow(DmaDebugError);
    d.mutex.lock();
    expect(hmmDmaMapPfn(dev0, map, 0, hmmP2pState())).not.toBe(DMA_MAPPING_ERROR);
    d.mutex.unlock();
  });
});

describe("dmirror in DMA mode", { timeout: 60_000 }, () => {
  it("faults in, maps through one IOVA, moves bytes through the IOMMU, and an munmap takes the translations away", () => {
    const rig = hmmRig();
    const { mm, mdev0, dev0 } = rig;
    const n = 32;
    const a = mm.mmap(n * PAGE_SIZE);
    for (let i = 0; i < n; i++) mm.write(a + i * PAGE_SIZE, patternBytes(64, i + 1));
    const d = mdev0.open(mm, { dev: dev0, start: a, size: n * PAGE_SIZE });
    const buf = new Uint8Array(64);
    for (let i = 0; i < n; i++) {
      expect(d.deviceRead(a + i * PAGE_SIZE, buf)).toBe(0);
      expect(buf).toEqual(patternBytes(64, i + 1));
      expect(d.translate(a + i * PAGE_SIZE)?.phys).toBe((mm.pteAt(a + i * PAGE_SIZE)?.pfn ?? 0) * PAGE_SIZE);
    }
    expect(d.deviceWrite(a + 5 * PAGE_SIZE + 100, new Uint8Array([9, 9, 9]))).toBe(0);
    expect(mm.read(a + 5 * PAGE_SIZE + 100, 3)).toEqual(new Uint8Array([9, 9, 9]));
    const log: InvalidationLog = mm.invalidations;
    mm.munmap(a, n * PAGE_SIZE);
    const rec = log.records[log.records.length - 1];
    expect(rec?.reason).toBe("UNMAP");
    expect(InvalidationLog.timeToQuiescence(rec ?? log.records[0]!)).toBe(d.costs.deviceTlbInvalidateNs);
    expect(d.liveTranslations(a, a + n * PAGE_SIZE)).toBe(0);
    expect(dev0.domain?.iovaToPhys(iova(d.dma?.map.state.addr ?? 0))).toBeUndefined();
    d.close();
    expect(mm.sys.kernel.iovaTracker).toBeDefined();
  });

  it("a P2P BAR mapped next to RAM: one hmm_dma_map holds a bus address (an IOVA hole) and IOVA-linked RAM", () => {
    const MB2 = 2 * MiB;
    const platform = createPlatform({
      memory: { ramBytes: 1 * GiB },
      iommu: {},
      hostBridges: [{ id: "hb0", p2p: "none", busOffset: 0 }],
      rootPorts: [{ id: "rp0" }],
      switches: [{ id: "sw0", parent: "rp0", downstreamPorts: 2 }],
      endpoints: [
        { bdf: "0000:02:00.0", parent: "sw0.dp0" },
        { bdf: "0000:03:00.0", parent: "sw0.dp1", bars: [{ size: MB2 }] },
      ],
    });
    const kernel = createDmaKernel(platform, { swiotlb: false });
    const dev = kernel.device("0000:02:00.0");
    const provider = platform.addP2pdmaProvider("0000:03:00.0", 0);
    expect(platform.pciP2pdmaMapType(provider, dev.bdf)).toBe(PciP2pdmaMapType.BUS_ADDR);
    const sys = new MmSystem(kernel);
    const mm = new Mm(sys);
    const mdev = new DmirrorDevice(sys, { name: "hmm_dmirror0", devmemPhys: 64 * GiB, devmemSize: 4 * MiB, ownerId: 0x10000 });
    const a = mm.mmap(4 * PAGE_SIZE);
    mm.mmap(2 * PAGE_SIZE, { addr: a + 2 * PAGE_SIZE, p2p: provider, shared: true });
    mm.write(a, patternBytes(2 * PAGE_SIZE, 3));
    platform.memory.write(provider.phys, patternBytes(2 * PAGE_SIZE, 4));
    const d = mdev.open(mm, { dev, start: a, size: 4 * PAGE_SIZE });
    const buf = new Uint8Array(4 * PAGE_SIZE);
    expect(d.deviceRead(a, buf)).toBe(0);
    expect(buf.subarray(0, 2 * PAGE_SIZE)).toEqual(patternBytes(2 * PAGE_SIZE, 3));
    expect(buf.subarray(2 * PAGE_SIZE)).toEqual(patternBytes(2 * PAGE_SIZE, 4));
    const map = d.dma?.map;
    expect((map?.flags[2] ?? 0) & HMM_PFN_P2PDMA_BUS).toBe(HMM_PFN_P2PDMA_BUS);
    expect(dev.domain?.iovaToPhys(iova((map?.state.addr ?? 0) + 2 * PAGE_SIZE))).toBeUndefined();
    expect(dev.domain?.iovaToPhys(iova(map?.state.addr ?? 0))).toBe((mm.pteAt(a)?.pfn ?? 0) * PAGE_SIZE);
    mm.munmap(a, 4 * PAGE_SIZE);
    expect(d.liveTranslations(a, a + 4 * PAGE_SIZE)).toBe(0);
    d.close();
  });

  it("an invalidation racing the fault at each step never leaves a translation to a page the CPU no longer maps", () => {
    for (const step of ["after-read-begin", "in-hmm-range-fault", "before-driver-lock", "before-read-retry"] as const) {
      const { mm, mdev0, dev0 } = hmmRig();
      const a = mm.mmap(8 * PAGE_SIZE);
      mm.write(a, new Uint8Array(8 * PAGE_SIZE).fill(1));
      const d = mdev0.open(mm, { dev: dev0, start: a, size: 8 * PAGE_SIZE });
      let fired = false;
      d.inject[step] = () => {
        if (fired) return;
        fired = true;
        expect(mm.migratePage(a + 3 * PAGE_SIZE)).toBe(0);
      };
      expect(d.deviceRead(a, new Uint8Array(8 * PAGE_SIZE))).toBe(0);
      expect(fired).toBe(true);
      for (let i = 0; i < 8; i++) {
        const t = d.translate(a + i * PAGE_SIZE);
        if (t !== undefined) expect(t.phys).toBe((mm.pteAt(a + i * PAGE_SIZE)?.pfn ?? 0) * PAGE_SIZE);
      }
    }
  });

  it("the stale-sequence retry loop stalls for the whole HMM_RANGE_DEFAULT_TIMEOUT (amdgpu 2026)", () => {
    const { mm, mdev0, kernel } = hmmRig({ debug: "collect" });
    const a = mm.mmap(PAGE_SIZE);
    const d = mdev0.open(mm);
    d.staleSeqBug = true;
    let fired = false;
    d.inject["after-read-begin"] = () => {
      if (fired) return;
      fired = true;
      mm.madvise(a, PAGE_SIZE, 4);
    };
    const t0 = kernel.trace.clock.now;
    expect(d.deviceRead(a, new Uint8Array(8))).toBe(-HmmErrno.EBUSY);
    expect(kernel.trace.clock.now - t0).toBeGreaterThanOrEqual(1e9);
    expect(kernel.debugReports().some((r) => r.check === "hmm-stale-seq")).toBe(true);
    // The fixed loop (read_begin on every attempt) gets through at once.
    d.staleSeqBug = false;
    fired = false;
    const t1 = kernel.trace.clock.now;
    expect(d.deviceRead(a, new Uint8Array(8))).toBe(0);
    expect(kernel.trace.clock.now - t1).toBeLessThan(1e6);
    expect(mm.invalidations.records.some((r) => r.reason === "CLEAR" && r.tFirstDmaAfter !== undefined)).toBe(true);
  });
});
