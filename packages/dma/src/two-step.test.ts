import { describe, expect, it } from "vitest";
import { GiB, physAddr, unsafePhysAddr } from "@dmasim/memory";
import { PcieAccessError } from "@dmasim/pcie-p2p";
import { Counter } from "./counters.js";
import {
  DMA_ATTR_MMIO,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_BIT_MASK,
  DmaDirection,
  DmaInputError,
  DmaIovaState,
  dmaIovaDestroy,
  dmaIovaFree,
  dmaIovaLink,
  dmaIovaSize,
  dmaIovaSync,
  dmaIovaTryAlloc,
  dmaIovaUnlink,
  dmaSetMask,
  dmaSetMaskAndCoherent,
  dmaUseIova,
  Errno,
  unsafeDmaAddr,
} from "./index.js";
import type { DmaAddr, DmaDevice } from "./index.js";
import { allocBuffer, lastFaultReason, makeKernel, pattern, tryDmaRead, tryDmaWrite, UNTRUSTED_BDF, TRUSTED_BDF } from "./test-fixtures.js";
import type { Fixture } from "./test-fixtures.js";
import { iova } from "@dmasim/iommu";

const G = 4096;
const BIDI = DmaDirection.BIDIRECTIONAL;
const FQ_TIMEOUT_NS = 10_000_000;

/** try_alloc + link + sync of one buffer; returns the state. */
function mapOne(dev: DmaDevice, phys: number, len: number, dir: DmaDirection = BIDI, attrs = 0): DmaIovaState {
  const state = new DmaIovaState();
  expect(dmaIovaTryAlloc(dev, state, unsafePhysAddr(phys), len)).toBe(true);
  expect(dmaIovaLink(dev, state, unsafePhysAddr(phys), 0, len, dir, attrs)).toBe(0);
  expect(dmaIovaSync(dev, state, 0, len)).toBe(0);
  return state;
}

/** The fields of a state, as a plain object to compare. */
function fields(state: DmaIovaState): { addr: number; size: number; useSwiotlb: boolean } {
  return { addr: state.addr, size: state.size, useSwiotlb: state.useSwiotlb };
}

function expectFault(fx: Fixture, dev: DmaDevice, addr: number, len: number, reason: string): void {
  const got = tryDmaRead(fx.endpoint(dev), addr, len);
  expect(got).toBeInstanceOf(PcieAccessError);
  expect((got as PcieAccessError).kind).toBe("iommu-fault");
  expect(lastFaultReason(fx.platform, dev.bdf)).toBe(reason);
}

describe("dma_iova_try_alloc", () => {
  it("zeroes the state even when it fails", () => {
    const fx = makeKernel({ iommuMode: "off" });
    const state = new DmaIovaState();
    state.addr = 0x1234 as DmaAddr;
    state.size = 99;
    state.useSwiotlb = true;
    expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(0x10000), G)).toBe(false);
    expect(state).toEqual(Object.assign(new DmaIovaState(), { addr: 0, size: 0, useSwiotlb: false }));
    expect(dmaUseIova(state)).toBe(false);
  });

  it("clears a stale swiotlb flag of a reused state on success", () => {
    const fx = makeKernel();
    const state = new DmaIovaState();
    state.useSwiotlb = true;
    expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(0x10000), G)).toBe(true);
    expect(state.useSwiotlb).toBe(false);
    expect(dmaIovaSize(state)).toBe(G);
  });

  it.each([["off"], ["passthrough"]] as const)("returns false in iommu mode %s, and the other calls do nothing", (mode) => {
    const fx = makeKernel({ iommuMode: mode });
    const buf = allocBuffer(fx.platform, 2 * G);
    const state = new DmaIovaState();
    const before = fx.platform.trace.counters.snapshot();
    expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(buf.phys), buf.len)).toBe(false);
    expect(dmaUseIova(state)).toBe(false);
    expect(dmaIovaLink(fx.dev, state, unsafePhysAddr(buf.phys), 0, buf.len, BIDI, 0)).toBe(-Errno.EOPNOTSUPP);
    expect(dmaIovaSync(fx.dev, state, 0, buf.len)).toBe(-Errno.EOPNOTSUPP);
    dmaIovaUnlink(fx.dev, state, 0, buf.len, BIDI, 0);
    dmaIovaDestroy(fx.dev, state, buf.len, BIDI, 0);
    dmaIovaFree(fx.dev, state);
    const moved = fx.platform.trace.counters.snapshot().diff(before).nonZero();
    expect(moved).toEqual({});
  });

  it("passthrough still gives untrusted devices a DMA domain", () => {
    const fx = makeKernel({ iommuMode: "passthrough" });
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.untrusted, state, unsafePhysAddr(0x10000), G)).toBe(true);
    expect(dmaUseIova(state)).toBe(true);
  });

  it("returns false on a platform with no IOMMU", () => {
    const fx = makeKernel({ iommu: null });
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(0x10000), G)).toBe(false);
    expect(dmaIovaTryAlloc(fx.untrusted, state, unsafePhysAddr(0x10000), G)).toBe(false);
    expect(dmaIovaLink(fx.dev, state, unsafePhysAddr(0x10000), 0, G, BIDI, 0)).toBe(-Errno.EOPNOTSUPP);
  });

  it("returns false on size 0 and warns once (api-warn)", () => {
    const fx = makeKernel({ debug: "collect" });
    const state = new DmaIovaState();
    const { moved } = fx.delta(() => dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(0x10000), 0), Counter.IovaAllocTree, Counter.IovaAllocCache);
    expect(moved).toEqual([0, 0]);
    expect(dmaUseIova(state)).toBe(false);
    expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(0x10000), 0)).toBe(false);
    const reports = fx.kernel.debugReports();
    expect(reports.map((r) => r.check)).toEqual(["api-warn"]);
    expect(reports[0]?.device).toBe(fx.dev.bdf);
  });

  it("refuses bad input with DmaInputError and leaves the state alone", () => {
    const fx = makeKernel();
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(0x10000), G)).toBe(true);
    const copy = fields(state);
    for (const [phys, size] of [[-1, G], [0x1000, -5], [0.5, G], [2 ** 53, G], [2 ** 52, 2 ** 52]] as const) {
      expect(() => dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(phys), size)).toThrow(DmaInputError);
    }
    expect(fields(state)).toEqual(copy);
    try {
      dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(0x1000), -5);
    } catch (e) {
      expect((e as DmaInputError).code).toBe("EINVAL");
      expect((e as DmaInputError).message).toMatch(/size = -5 is invalid/);
    }
  });

  it("fails when the IOVA space under the mask is exhausted", () => {
    const fx = makeKernel();
    // A 20-bit mask leaves PFNs 1..255; 128 size-aligned pages fit once (PFNs 128..255), not twice.
    expect(dmaSetMask(fx.dev, DMA_BIT_MASK(20))).toBe(0);
    const a = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, a, unsafePhysAddr(0), 128 * G)).toBe(true);
    expect(a.addr).toBe(128 * G);
    const b = new DmaIovaState();
    const { result, moved } = fx.delta(() => dmaIovaTryAlloc(fx.dev, b, unsafePhysAddr(0), 128 * G), Counter.IovaAllocFail);
    expect(result).toBe(false);
    expect(moved[0]).toBeGreaterThan(0);
    expect(b).toEqual(new DmaIovaState());
    // What is left still serves a smaller request.
    expect(dmaIovaTryAlloc(fx.dev, b, unsafePhysAddr(0), 64 * G)).toBe(true);
    expect(b.addr + 64 * G).toBeLessThanOrEqual(128 * G);
  });

  it("keeps phys's offset inside the granule and allocates whole granules", () => {
    const fx = makeKernel();
    const state = new DmaIovaState();
    const phys = 0x5_0000 + 0x123;
    expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(phys), 2 * G)).toBe(true);
    expect(state.addr % G).toBe(0x123);
    expect(dmaIovaSize(state)).toBe(2 * G);
    // 2 pages + 0x123 need three granules: the allocation is 4 (size-aligned power of two) granules wide.
    const range = fx.dev.cookie?.iovad.findIova((state.addr - 0x123) / G);
    expect(range).toBeDefined();
    expect(range!.pfnLo * G).toBe(state.addr - 0x123);
    expect((range!.pfnHi - range!.pfnLo + 1) * G).toBeGreaterThanOrEqual(3 * G);
  });

  it("allocates below the 32-bit default mask, granule aligned", () => {
    const fx = makeKernel();
    for (let i = 0; i < 8; i++) {
      const state = new DmaIovaState();
      expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(i * G), (i + 1) * 5000)).toBe(true);
      expect(state.addr % G).toBe(0);
      expect(state.addr + (i + 1) * 5000).toBeLessThanOrEqual(2 ** 32);
      expect(state.addr).toBeGreaterThan(0);
    }
  });

  it("stays below the device's bus_dma_limit when it is tighter than the mask", () => {
    const fx = makeKernel();
    fx.dev.busDmaLimit = DMA_BIT_MASK(24);
    for (let i = 0; i < 4; i++) {
      const state = new DmaIovaState();
      expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(0), 64 * G)).toBe(true);
      expect(state.addr + 64 * G).toBeLessThanOrEqual(2 ** 24);
    }
  });

  it("gives a 64-bit PCI device addresses below 4 GiB first, above only after a failure there", () => {
    const fx = makeKernel();
    expect(dmaSetMaskAndCoherent(fx.dev, DMA_BIT_MASK(64))).toBe(0);
    const first = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, first, unsafePhysAddr(0), 16 * G)).toBe(true);
    expect(first.addr + 16 * G).toBeLessThanOrEqual(2 ** 32);
    // 3 GiB is aligned to 4 GiB below the 32-bit limit: it cannot fit there, so the rule is dropped.
    const big = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, big, unsafePhysAddr(0), 3 * GiB)).toBe(true);
    expect(big.addr).toBeGreaterThanOrEqual(2 ** 32);
    const after = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, after, unsafePhysAddr(0), 16 * G)).toBe(true);
    expect(after.addr).toBeGreaterThanOrEqual(2 ** 32);
    expect(fx.dev.iommuState.pci32bitWorkaround).toBe(false);
  });
});

describe("dma_iova_link", () => {
  it("returns 0 and writes PTEs with no IOTLB sync or invalidation", () => {
    const fx = makeKernel();
    const buf = allocBuffer(fx.platform, 3 * G);
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(buf.phys), buf.len)).toBe(true);
    const { result, moved } = fx.delta(
      () => dmaIovaLink(fx.dev, state, unsafePhysAddr(buf.phys), 0, buf.len, BIDI, 0),
      Counter.PteWrites,
      Counter.IotlbSyncMap,
      Counter.IotlbInvalRange,
      Counter.IotlbInvalDomain,
      Counter.IotlbInvalGlobal,
    );
    expect(result).toBe(0);
    expect(moved[0]).toBe(3);
    expect(moved.slice(1)).toEqual([0, 0, 0, 0]);
    for (let i = 0; i < 3; i++) expect(fx.dev.domain!.iovaToPhys(iova(state.addr + i * G))).toBe(buf.phys + i * G);
    expect(fx.dev.domain!.iovaToPhys(iova(state.addr + 3 * G))).toBeUndefined();
  });

  it("links several ranges at increasing offsets of one IOVA and the device sees them back to back", () => {
    const fx = makeKernel();
    const a = allocBuffer(fx.platform, 2 * G, { seed: 3 });
    const b = allocBuffer(fx.platform, G, { seed: 4 });
    const c = allocBuffer(fx.platform, 100, { seed: 5 });
    const total = 3 * G + 100;
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(a.phys), total)).toBe(true);
    expect(dmaIovaLink(fx.dev, state, unsafePhysAddr(a.phys), 0, a.len, BIDI, 0)).toBe(0);
    expect(dmaIovaLink(fx.dev, state, unsafePhysAddr(b.phys), 2 * G, b.len, BIDI, 0)).toBe(0);
    expect(dmaIovaLink(fx.dev, state, unsafePhysAddr(c.phys), 3 * G, c.len, BIDI, 0)).toBe(0);
    expect(dmaIovaSync(fx.dev, state, 0, total)).toBe(0);
    const seen = fx.endpoint(fx.dev).dmaRead(state.addr, total);
    expect(seen.subarray(0, 2 * G)).toEqual(a.bytes);
    expect(seen.subarray(2 * G, 3 * G)).toEqual(b.bytes);
    expect(seen.subarray(3 * G)).toEqual(c.bytes);
  });

  it("returns -EIO for an unaligned phys at offset > 0 and maps nothing", () => {
    const fx = makeKernel({ debug: "collect" });
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(0x10000), 4 * G)).toBe(true);
    const { result, moved } = fx.delta(() => dmaIovaLink(fx.dev, state, unsafePhysAddr(0x20000 + 8), G, G, BIDI, 0), Counter.PteWrites);
    expect(result).toBe(-Errno.EIO);
    expect(moved).toEqual([0]);
    expect(fx.dev.domain!.iovaToPhys(iova(state.addr + G))).toBeUndefined();
    expect(fx.kernel.debugReports().map((r) => r.check)).toEqual(["api-warn"]);
  });

  it("keeps the offset of an unaligned first range: the device reads the bytes at state.addr", () => {
    const fx = makeKernel();
    const buf = allocBuffer(fx.platform, G + 500, { offset: 0x321 });
    const state = mapOne(fx.dev, buf.phys, buf.len);
    expect(state.addr % G).toBe(0x321);
    expect(fx.endpoint(fx.dev).dmaRead(state.addr, buf.len)).toEqual(buf.bytes);
    expect(state.useSwiotlb).toBe(false);
  });

  it("returns -EOPNOTSUPP for REQUIRE_COHERENT on a non-coherent device, and maps nothing", () => {
    const fx = makeKernel({ devices: { [TRUSTED_BDF]: { coherent: false } } });
    const buf = allocBuffer(fx.platform, G);
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(buf.phys), buf.len)).toBe(true);
    const { result, moved } = fx.delta(
      () => dmaIovaLink(fx.dev, state, unsafePhysAddr(buf.phys), 0, buf.len, BIDI, DMA_ATTR_REQUIRE_COHERENT),
      Counter.PteWrites,
      Counter.CacheLinesWrittenBack,
    );
    expect(result).toBe(-Errno.EOPNOTSUPP);
    expect(moved).toEqual([0, 0]);
    expect(fx.dev.domain!.iovaToPhys(iova(state.addr))).toBeUndefined();
  });

  it("an empty link succeeds and maps nothing, an empty sync does nothing", () => {
    const fx = makeKernel();
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(0x10000), 2 * G)).toBe(true);
    const { result, moved } = fx.delta(
      () => [dmaIovaLink(fx.dev, state, unsafePhysAddr(0x10000), G, 0, BIDI, 0), dmaIovaSync(fx.dev, state, G, 0)],
      Counter.PteWrites,
      Counter.IotlbSyncMap,
    );
    expect(result).toEqual([0, 0]);
    expect(moved).toEqual([0, 0]);
    expect(fx.dev.domain!.mappedBytes).toBe(0);
    expect(fx.kernel.dmesg()).toEqual([]);
  });

  it("refuses bad arguments with DmaInputError before touching the page table", () => {
    const fx = makeKernel();
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(0x10000), G)).toBe(true);
    const ptes = fx.count(Counter.PteWrites);
    expect(() => dmaIovaLink(fx.dev, state, unsafePhysAddr(0x10000), -1, G, BIDI, 0)).toThrow(/offset = -1 is invalid/);
    expect(() => dmaIovaLink(fx.dev, state, unsafePhysAddr(0x10000), 0, G, 7 as DmaDirection, 0)).toThrow(DmaInputError);
    expect(() => dmaIovaLink(fx.dev, state, unsafePhysAddr(0x10000), 0, G, BIDI, 1 << 20)).toThrow(/attrs/);
    expect(() => dmaIovaLink(fx.dev, state, unsafePhysAddr(Number.NaN), 0, G, BIDI, 0)).toThrow(DmaInputError);
    expect(fx.count(Counter.PteWrites)).toBe(ptes);
    expect(fx.dev.domain!.iovaToPhys(iova(state.addr))).toBeUndefined();
  });

  describe("untrusted device, unaligned range", () => {
    // Head: 0x100 into its page, so 3840 bytes bounced; middle: one whole page; tail: 0x100 bytes bounced.
    const OFF = 0x100;
    const LEN = 2 * G;
    // The bounced head must sit in its slot at the same offset as in the IOVA granule, which swiotlb only
    // does for bits under the device's min_align_mask: NVMe (the API's first user) sets it to 0xfff.
    const NVME_LIKE = { [UNTRUSTED_BDF]: { minAlignMask: 0xfff } };

    function setup(): { fx: Fixture; phys: number; bytes: Uint8Array; state: DmaIovaState } {
      const fx = makeKernel({ swiotlb: { bytes: 1024 * 1024 }, devices: NVME_LIKE });
      const pool = fx.kernel.swiotlb!;
      // Leave junk in the whole pool so padding that is not zeroed would show.
      fx.platform.memory.fill(pool.start, pool.end - pool.start, 0xee);
      const buf = allocBuffer(fx.platform, LEN, { offset: OFF, seed: 9 });
      const state = new DmaIovaState();
      expect(dmaIovaTryAlloc(fx.untrusted, state, unsafePhysAddr(buf.phys), LEN)).toBe(true);
      return { fx, phys: buf.phys, bytes: buf.bytes, state };
    }

    it("bounces head and tail, links the middle directly, and the device reads exactly the buffer", () => {
      const { fx, phys, bytes, state } = setup();
      const { result, moved } = fx.delta(
        () => dmaIovaLink(fx.untrusted, state, unsafePhysAddr(phys), 0, LEN, DmaDirection.TO_DEVICE, 0),
        Counter.SwiotlbSlotsAllocated,
        Counter.SwiotlbBounceBytes,
      );
      expect(result).toBe(0);
      // One granule (two 2 KiB slots) for the head and one for the tail; every bounced byte copied once.
      expect(moved).toEqual([4, G - OFF + OFF]);
      expect(state.useSwiotlb).toBe(true);
      const dom = fx.untrusted.domain!;
      const pool = fx.kernel.swiotlb!;
      const headIova = state.addr - OFF;
      const head = dom.iovaToPhys(iova(headIova))!;
      const tail = dom.iovaToPhys(iova(headIova + 2 * G))!;
      expect(pool.isSwiotlbBuffer(head)).toBe(true);
      expect(pool.isSwiotlbBuffer(tail)).toBe(true);
      expect(dom.iovaToPhys(iova(headIova + G))).toBe(phys - OFF + G);
      expect(dmaIovaSync(fx.untrusted, state, 0, LEN)).toBe(0);
      const ep = fx.endpoint(fx.untrusted);
      expect(ep.dmaRead(state.addr, LEN)).toEqual(bytes);
      // Around the data, the device's whole-granule view holds zeros, not what the pool held before.
      const headGranule = ep.dmaRead(unsafeDmaAddr(headIova), G);
      expect(headGranule.subarray(0, OFF)).toEqual(new Uint8Array(OFF));
      const tailGranule = ep.dmaRead(unsafeDmaAddr(headIova + 2 * G), G);
      expect(tailGranule.subarray(OFF)).toEqual(new Uint8Array(G - OFF));
    });

    it("unlink of a FROM_DEVICE bounced state copies the device's bytes back to the original buffer", () => {
      const { fx, phys, state } = setup();
      expect(dmaIovaLink(fx.untrusted, state, unsafePhysAddr(phys), 0, LEN, DmaDirection.FROM_DEVICE, 0)).toBe(0);
      expect(dmaIovaSync(fx.untrusted, state, 0, LEN)).toBe(0);
      const written = pattern(LEN, 77);
      fx.endpoint(fx.untrusted).dmaWrite(state.addr, written);
      expect(fx.kernel.swiotlb!.stats.used).toBe(4);
      dmaIovaUnlink(fx.untrusted, state, 0, LEN, DmaDirection.FROM_DEVICE, 0);
      expect(fx.platform.memory.read(physAddr(phys), LEN)).toEqual(written);
      expect(fx.kernel.swiotlb!.stats.used).toBe(0);
      expect(fx.untrusted.domain!.mappedBytes).toBe(0);
      dmaIovaFree(fx.untrusted, state);
    });

    it.each([["MMIO", DMA_ATTR_MMIO], ["REQUIRE_COHERENT", DMA_ATTR_REQUIRE_COHERENT]] as const)(
      "returns -EPERM with %s and maps nothing",
      (_name, attrs) => {
        const { fx, phys, state } = setup();
        const { result, moved } = fx.delta(
          () => dmaIovaLink(fx.untrusted, state, unsafePhysAddr(phys), 0, LEN, BIDI, attrs),
          Counter.PteWrites,
          Counter.SwiotlbSlotsAllocated,
        );
        expect(result).toBe(-Errno.EPERM);
        expect(moved).toEqual([0, 0]);
        expect(state.useSwiotlb).toBe(false);
      },
    );

    it("a later REQUIRE_COHERENT link on a state that bounced warns and returns -EOPNOTSUPP", () => {
      const fx = makeKernel({ devices: NVME_LIKE, debug: "collect" });
      const head = allocBuffer(fx.platform, G - OFF, { offset: OFF });
      const next = allocBuffer(fx.platform, G);
      const state = new DmaIovaState();
      expect(dmaIovaTryAlloc(fx.untrusted, state, unsafePhysAddr(head.phys), 2 * G - OFF)).toBe(true);
      expect(dmaIovaLink(fx.untrusted, state, unsafePhysAddr(head.phys), 0, head.len, BIDI, 0)).toBe(0);
      expect(state.useSwiotlb).toBe(true);
      const { result, moved } = fx.delta(
        () => dmaIovaLink(fx.untrusted, state, unsafePhysAddr(next.phys), head.len, G, BIDI, DMA_ATTR_REQUIRE_COHERENT),
        Counter.PteWrites,
      );
      expect(result).toBe(-Errno.EOPNOTSUPP);
      expect(moved).toEqual([0]);
      expect(fx.kernel.debugReports().map((r) => r.check)).toEqual(["api-warn"]);
      // Without the attribute the same aligned range links directly.
      expect(dmaIovaLink(fx.untrusted, state, unsafePhysAddr(next.phys), head.len, G, BIDI, 0)).toBe(0);
      expect(fx.untrusted.domain!.iovaToPhys(iova(state.addr + head.len))).toBe(next.phys);
    });

    it("returns -ENOMEM when swiotlb is full and leaves nothing linked or bounced", () => {
      const fx = makeKernel({ swiotlb: { bytes: 256 * 1024 }, cpus: 1, devices: NVME_LIKE });
      const pool = fx.kernel.swiotlb!;
      const filler = fx.platform.memory.allocator.allocPages(64);
      const all = pool.tblMapSingle(fx.untrusted, filler, 64 * G, 0, DmaDirection.TO_DEVICE, 0, 0);
      expect(all).toBeGreaterThanOrEqual(0);
      expect(pool.stats.free).toBe(0);
      const buf = allocBuffer(fx.platform, LEN, { offset: OFF });
      const state = new DmaIovaState();
      expect(dmaIovaTryAlloc(fx.untrusted, state, unsafePhysAddr(buf.phys), LEN)).toBe(true);
      const full = fx.delta(() => dmaIovaLink(fx.untrusted, state, unsafePhysAddr(buf.phys), 0, LEN, BIDI, 0), Counter.PteWrites);
      expect(full.result).toBe(-Errno.ENOMEM);
      expect(full.moved).toEqual([0]);
      expect(fx.untrusted.domain!.mappedBytes).toBe(0);
      // Room for the head only: the tail fails after the head and the middle were linked, and both are undone.
      pool.tblUnmapSingle(fx.untrusted, unsafePhysAddr(all), 64 * G, DmaDirection.TO_DEVICE, 0);
      const most = pool.tblMapSingle(fx.untrusted, filler, 63 * G, 0, DmaDirection.TO_DEVICE, 0, 0);
      expect(pool.stats.free).toBe(2);
      const partial = fx.delta(
        () => dmaIovaLink(fx.untrusted, state, unsafePhysAddr(buf.phys), 0, LEN, BIDI, 0),
        Counter.SwiotlbSlotsAllocated,
        Counter.SwiotlbSlotsFreed,
        Counter.PteWrites,
        Counter.PteClears,
      );
      expect(partial.result).toBe(-Errno.ENOMEM);
      const [allocated, freed, written, cleared] = partial.moved;
      expect(allocated).toBe(2);
      expect(freed).toBe(2);
      expect(written).toBe(2);
      expect(cleared).toBeGreaterThan(0);
      expect(pool.stats.free).toBe(2);
      expect(fx.untrusted.domain!.mappedBytes).toBe(0);
      expect(fx.untrusted.domain!.iovaToPhys(iova(state.addr))).toBeUndefined();
      pool.tblUnmapSingle(fx.untrusted, unsafePhysAddr(most), 63 * G, DmaDirection.TO_DEVICE, 0);
      dmaIovaFree(fx.untrusted, state);
    });

    it("with no swiotlb at all the unaligned range is refused (-ENOMEM), never linked unbounced", () => {
      const fx = makeKernel({ swiotlb: false });
      const buf = allocBuffer(fx.platform, LEN, { offset: OFF });
      const state = new DmaIovaState();
      expect(dmaIovaTryAlloc(fx.untrusted, state, unsafePhysAddr(buf.phys), LEN)).toBe(true);
      const { result, moved } = fx.delta(() => dmaIovaLink(fx.untrusted, state, unsafePhysAddr(buf.phys), 0, LEN, BIDI, 0), Counter.PteWrites);
      expect(result).toBe(-Errno.ENOMEM);
      expect(moved).toEqual([0]);
      expect(fx.kernel.dmesg().some((l) => l.message.includes("bounce buffers are inactive"))).toBe(true);
    });

    it("without a min_align_mask an unaligned head cannot be linked (-EINVAL, as upstream) and nothing stays behind", () => {
      const fx = makeKernel();
      const buf = allocBuffer(fx.platform, LEN, { offset: OFF });
      const state = new DmaIovaState();
      expect(dmaIovaTryAlloc(fx.untrusted, state, unsafePhysAddr(buf.phys), LEN)).toBe(true);
      const { result, moved } = fx.delta(
        () => dmaIovaLink(fx.untrusted, state, unsafePhysAddr(buf.phys), 0, LEN, BIDI, 0),
        Counter.SwiotlbSlotsAllocated,
        Counter.SwiotlbSlotsFreed,
        Counter.PteWrites,
      );
      expect(result).toBe(-Errno.EINVAL);
      expect(moved[0]).toBe(moved[1]);
      expect(moved[2]).toBe(0);
      expect(fx.kernel.swiotlb!.stats.used).toBe(0);
      expect(fx.untrusted.domain!.mappedBytes).toBe(0);
      expect(fx.platform.memory.read(physAddr(buf.phys), LEN)).toEqual(buf.bytes);
      expect(fx.kernel.dmesg().some((l) => l.device === UNTRUSTED_BDF && l.message.includes("unaligned"))).toBe(true);
    });

    it("without a min_align_mask an aligned start with a partial tail still bounces the tail", () => {
      const fx = makeKernel();
      const buf = allocBuffer(fx.platform, G + 300, { seed: 12 });
      const state = mapOne(fx.untrusted, buf.phys, buf.len);
      expect(state.useSwiotlb).toBe(true);
      expect(fx.kernel.swiotlb!.isSwiotlbBuffer(fx.untrusted.domain!.iovaToPhys(iova(state.addr + G))!)).toBe(true);
      expect(fx.endpoint(fx.untrusted).dmaRead(state.addr, buf.len)).toEqual(buf.bytes);
      expect(fx.endpoint(fx.untrusted).dmaRead(unsafeDmaAddr(state.addr + buf.len), G - 300)).toEqual(new Uint8Array(G - 300));
    });
  });

  it("an aligned range on an untrusted device is linked directly, no bounce", () => {
    const fx = makeKernel();
    const buf = allocBuffer(fx.platform, 2 * G);
    const { result, moved } = fx.delta(() => mapOne(fx.untrusted, buf.phys, buf.len), Counter.SwiotlbSlotsAllocated);
    expect(result.useSwiotlb).toBe(false);
    expect(moved).toEqual([0]);
    expect(fx.untrusted.domain!.iovaToPhys(iova(result.addr))).toBe(buf.phys);
  });

  it("writes back the CPU cache for a non-coherent device; SKIP_CPU_SYNC and MMIO skip it", () => {
    const fx = makeKernel({ devices: { [TRUSTED_BDF]: { coherent: false } } });
    const buf = allocBuffer(fx.platform, G);
    const data = pattern(G, 42);
    const cases: [number, number][] = [[0, G / 64], [DMA_ATTR_SKIP_CPU_SYNC, 0], [DMA_ATTR_MMIO, 0]];
    for (const [attrs, lines] of cases) {
      fx.kernel.cpuWrite(unsafePhysAddr(buf.phys), data);
      const state = new DmaIovaState();
      expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(buf.phys), G)).toBe(true);
      const { result, moved } = fx.delta(() => dmaIovaLink(fx.dev, state, unsafePhysAddr(buf.phys), 0, G, DmaDirection.TO_DEVICE, attrs), Counter.CacheLinesWrittenBack);
      expect(result).toBe(0);
      expect(moved).toEqual([lines]);
      expect(dmaIovaSync(fx.dev, state, 0, G)).toBe(0);
      const seen = fx.endpoint(fx.dev).dmaRead(state.addr, G);
      // Only the written-back case lets the device see the CPU's data; the others still see old memory.
      expect(seen).toEqual(lines > 0 ? data : buf.bytes);
      dmaIovaDestroy(fx.dev, state, G, DmaDirection.TO_DEVICE, attrs);
      fx.kernel.cpuCache.flushAll();
      fx.platform.memory.write(physAddr(buf.phys), buf.bytes);
    }
  });

  it("maps TO_DEVICE read-only: a device write faults with reason permission", () => {
    const fx = makeKernel();
    const buf = allocBuffer(fx.platform, G);
    const state = mapOne(fx.dev, buf.phys, G, DmaDirection.TO_DEVICE);
    expect(fx.endpoint(fx.dev).dmaRead(state.addr, G)).toEqual(buf.bytes);
    const err = tryDmaWrite(fx.endpoint(fx.dev), state.addr, new Uint8Array(16));
    expect(err).toBeInstanceOf(PcieAccessError);
    expect(lastFaultReason(fx.platform, fx.dev.bdf)).toBe("permission");
    expect(fx.platform.memory.read(physAddr(buf.phys), G)).toEqual(buf.bytes);
  });

  it("maps FROM_DEVICE write-only: the device's write lands, a read faults", () => {
    const fx = makeKernel();
    const buf = allocBuffer(fx.platform, G);
    const state = mapOne(fx.dev, buf.phys, G, DmaDirection.FROM_DEVICE);
    const data = pattern(G, 8);
    fx.endpoint(fx.dev).dmaWrite(state.addr, data);
    expect(fx.platform.memory.read(physAddr(buf.phys), G)).toEqual(data);
    expectFault(fx, fx.dev, state.addr, 16, "permission");
  });
});

describe("dma_iova_sync", () => {
  it("issues exactly one iotlb_sync_map per call over the granule-aligned range", () => {
    const fx = makeKernel();
    const buf = allocBuffer(fx.platform, 5 * G, { offset: 0x80 });
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(buf.phys), buf.len)).toBe(true);
    expect(dmaIovaLink(fx.dev, state, unsafePhysAddr(buf.phys), 0, buf.len, BIDI, 0)).toBe(0);
    const { result, moved } = fx.delta(() => dmaIovaSync(fx.dev, state, 0, buf.len), Counter.IotlbSyncMap, Counter.DmaIovaSyncs);
    expect(result).toBe(0);
    expect(moved).toEqual([1, 1]);
  });

  it("on an IOMMU that requires iotlb_sync_map, a device access faults before the sync and works after", () => {
    // "collect": dma-debug also reports the access before the sync, and lets it reach the IOMMU.
    const fx = makeKernel({ iommu: { requiresSyncMap: true }, debug: "collect" });
    const buf = allocBuffer(fx.platform, 3 * G, { offset: 0x40 });
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(buf.phys), buf.len)).toBe(true);
    expect(dmaIovaLink(fx.dev, state, unsafePhysAddr(buf.phys), 0, buf.len, BIDI, 0)).toBe(0);
    expect(tryDmaRead(fx.endpoint(fx.dev), state.addr, 64)).toBeInstanceOf(PcieAccessError);
    // The last granule: the sync must cover it although [0, len) ends inside it.
    expect(tryDmaRead(fx.endpoint(fx.dev), state.addr + buf.len - 8, 8)).toBeInstanceOf(PcieAccessError);
    expect(fx.kernel.debugReports().map((r) => r.check)).toEqual(["iova-access-before-sync", "iova-access-before-sync"]);
    expect(dmaIovaSync(fx.dev, state, 0, buf.len)).toBe(0);
    expect(fx.endpoint(fx.dev).dmaRead(state.addr, buf.len)).toEqual(buf.bytes);
    expect(fx.kernel.debugReports()).toHaveLength(2);
  });

  it("a partial sync makes only its granules visible on such an IOMMU", () => {
    const fx = makeKernel({ iommu: { requiresSyncMap: true }, debug: "collect" });
    const buf = allocBuffer(fx.platform, 4 * G);
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(buf.phys), buf.len)).toBe(true);
    expect(dmaIovaLink(fx.dev, state, unsafePhysAddr(buf.phys), 0, buf.len, BIDI, 0)).toBe(0);
    expect(dmaIovaSync(fx.dev, state, G + 10, 20)).toBe(0);
    expect(fx.endpoint(fx.dev).dmaRead(unsafeDmaAddr(state.addr + G), G)).toEqual(buf.bytes.subarray(G, 2 * G));
    expect(tryDmaRead(fx.endpoint(fx.dev), state.addr, 8)).toBeInstanceOf(PcieAccessError);
    expect(tryDmaRead(fx.endpoint(fx.dev), state.addr + 2 * G, 8)).toBeInstanceOf(PcieAccessError);
    expect(fx.kernel.debugReports().map((r) => r.check)).toEqual(["iova-access-before-sync", "iova-access-before-sync"]);
  });
});

describe("dma_iova_unlink", () => {
  it.each([["strict"], ["lazy"]] as const)("clears the PTEs and invalidates the IOTLB at once (%s)", (mode) => {
    const fx = makeKernel({ iommuMode: mode });
    const buf = allocBuffer(fx.platform, 2 * G);
    const state = mapOne(fx.dev, buf.phys, buf.len);
    expect(fx.endpoint(fx.dev).dmaRead(state.addr, buf.len)).toEqual(buf.bytes); // fills the IOTLB
    const { moved } = fx.delta(
      () => {
        dmaIovaUnlink(fx.dev, state, 0, buf.len, BIDI, 0);
      },
      Counter.IotlbInvalRange,
      Counter.FlushQueueEntries,
    );
    expect(moved).toEqual([1, 0]);
    expect(fx.dev.domain!.iovaToPhys(iova(state.addr))).toBeUndefined();
    expectFault(fx, fx.dev, state.addr, 64, "not-mapped");
    expect(fx.count(Counter.IotlbStaleHits)).toBe(0);
    // The IOVA is still ours: relinking another buffer at the same offset works at the same address.
    const other = allocBuffer(fx.platform, 2 * G, { seed: 6 });
    expect(dmaIovaLink(fx.dev, state, unsafePhysAddr(other.phys), 0, other.len, BIDI, 0)).toBe(0);
    expect(dmaIovaSync(fx.dev, state, 0, other.len)).toBe(0);
    expect(fx.endpoint(fx.dev).dmaRead(state.addr, other.len)).toEqual(other.bytes);
    expect(fx.dev.cookie!.iovad.findIova(state.addr / G)).toBeDefined();
  });

  it("unlinks part of a state and leaves the rest mapped", () => {
    const fx = makeKernel();
    const buf = allocBuffer(fx.platform, 4 * G);
    const state = mapOne(fx.dev, buf.phys, buf.len);
    dmaIovaUnlink(fx.dev, state, G, 2 * G, BIDI, 0);
    const dom = fx.dev.domain!;
    expect([0, 1, 2, 3].map((i) => dom.iovaToPhys(iova(state.addr + i * G)))).toEqual([buf.phys, undefined, undefined, buf.phys + 3 * G]);
    expect(fx.endpoint(fx.dev).dmaRead(unsafeDmaAddr(state.addr + 3 * G), G)).toEqual(buf.bytes.subarray(3 * G));
  });

  it("invalidates the CPU cache for a non-coherent FROM_DEVICE unlink, so the CPU reads the device's data", () => {
    const fx = makeKernel({ devices: { [TRUSTED_BDF]: { coherent: false } } });
    const buf = allocBuffer(fx.platform, G);
    expect(fx.kernel.cpuRead(unsafePhysAddr(buf.phys), G)).toEqual(buf.bytes); // the CPU now caches the old bytes
    const state = mapOne(fx.dev, buf.phys, G, DmaDirection.FROM_DEVICE);
    const data = pattern(G, 55);
    fx.endpoint(fx.dev).dmaWrite(state.addr, data);
    const { moved } = fx.delta(() => {
      dmaIovaUnlink(fx.dev, state, 0, G, DmaDirection.FROM_DEVICE, 0);
    }, Counter.CacheLinesInvalidated);
    expect(moved[0]).toBe(G / 64);
    expect(fx.kernel.cpuRead(unsafePhysAddr(buf.phys), G)).toEqual(data);
  });
});

describe("dma_iova_destroy", () => {
  it("strict: invalidates at once, a later device access faults not-mapped, the IOVA is free", () => {
    const fx = makeKernel({ iommuMode: "strict" });
    const buf = allocBuffer(fx.platform, 2 * G);
    const state = mapOne(fx.dev, buf.phys, buf.len);
    fx.endpoint(fx.dev).dmaRead(state.addr, buf.len);
    const addr = state.addr;
    const { moved } = fx.delta(() => {
      dmaIovaDestroy(fx.dev, state, buf.len, BIDI, 0);
    }, Counter.IotlbInvalRange);
    expect(moved).toEqual([1]);
    expectFault(fx, fx.dev, addr, 64, "not-mapped");
    expect(fx.count(Counter.IotlbStaleHits)).toBe(0);
    const again = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, again, unsafePhysAddr(buf.phys), buf.len)).toBe(true);
    expect(again.addr).toBe(addr);
  });

  it("lazy: no invalidation at destroy, stale reads until the 10 ms flush, then faults and the IOVA is reusable", () => {
    const fx = makeKernel({ iommuMode: "lazy" });
    const buf = allocBuffer(fx.platform, 2 * G);
    const state = mapOne(fx.dev, buf.phys, buf.len);
    const ep = fx.endpoint(fx.dev);
    expect(ep.dmaRead(state.addr, buf.len)).toEqual(buf.bytes);
    const addr = state.addr;
    const { moved } = fx.delta(
      () => {
        dmaIovaDestroy(fx.dev, state, buf.len, BIDI, 0);
      },
      Counter.IotlbInvalRange,
      Counter.IotlbInvalDomain,
      Counter.IotlbInvalGlobal,
      Counter.FlushQueueEntries,
    );
    expect(moved).toEqual([0, 0, 0, 1]);
    expect(fx.dev.domain!.iovaToPhys(iova(addr))).toBeUndefined();
    const stale = fx.delta(() => ep.dmaRead(addr, buf.len), Counter.IotlbStaleHits);
    expect(stale.result).toEqual(buf.bytes);
    expect(stale.moved[0]).toBe(2);
    // Not yet reusable: a new allocation of the same size gets another address.
    const other = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, other, unsafePhysAddr(buf.phys), buf.len)).toBe(true);
    expect(other.addr).not.toBe(addr);
    dmaIovaFree(fx.dev, other);
    fx.platform.trace.clock.advance(FQ_TIMEOUT_NS - 1);
    expect(ep.dmaRead(addr, 64)).toEqual(buf.bytes.subarray(0, 64));
    fx.platform.trace.clock.advance(1);
    expectFault(fx, fx.dev, addr, 64, "not-mapped");
    const again = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, again, unsafePhysAddr(buf.phys), buf.len)).toBe(true);
    expect([addr, other.addr]).toContain(again.addr);
  });

  it("untrusted devices are strict even in lazy mode", () => {
    const fx = makeKernel({ iommuMode: "lazy" });
    expect(fx.untrusted.strict).toBe(true);
    const buf = allocBuffer(fx.platform, 2 * G);
    const state = mapOne(fx.untrusted, buf.phys, buf.len);
    fx.endpoint(fx.untrusted).dmaRead(state.addr, buf.len);
    const { moved } = fx.delta(() => {
      dmaIovaDestroy(fx.untrusted, state, buf.len, BIDI, 0);
    }, Counter.IotlbInvalRange, Counter.FlushQueueEntries);
    expect(moved).toEqual([1, 0]);
    expectFault(fx, fx.untrusted, state.addr, 64, "not-mapped");
  });

  it("destroy of a bounced untrusted state copies FROM_DEVICE data back and frees the slots", () => {
    const fx = makeKernel({ iommuMode: "lazy", devices: { [UNTRUSTED_BDF]: { minAlignMask: 0xfff } } });
    const buf = allocBuffer(fx.platform, 3 * G, { offset: 0x10 });
    const state = mapOne(fx.untrusted, buf.phys, buf.len, DmaDirection.FROM_DEVICE);
    expect(state.useSwiotlb).toBe(true);
    const data = pattern(buf.len, 31);
    fx.endpoint(UNTRUSTED_BDF).dmaWrite(state.addr, data);
    dmaIovaDestroy(fx.untrusted, state, buf.len, DmaDirection.FROM_DEVICE, 0);
    expect(fx.platform.memory.read(physAddr(buf.phys), buf.len)).toEqual(data);
    expect(fx.kernel.swiotlb!.stats.used).toBe(0);
    expect(fx.untrusted.domain!.mappedBytes).toBe(0);
  });

  it("mapped_len 0 only frees the IOVA", () => {
    const fx = makeKernel({ iommuMode: "lazy" });
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(0x10000), 4 * G)).toBe(true);
    const addr = state.addr;
    const { moved } = fx.delta(
      () => {
        dmaIovaDestroy(fx.dev, state, 0, BIDI, 0);
      },
      Counter.IommuUnmapCalls,
      Counter.IotlbInvalRange,
      Counter.FlushQueueEntries,
    );
    expect(moved).toEqual([0, 0, 0]);
    const again = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, again, unsafePhysAddr(0x10000), 4 * G)).toBe(true);
    expect(again.addr).toBe(addr);
  });

  it("destroy of a state that never got an IOVA does nothing", () => {
    const fx = makeKernel();
    const before = fx.platform.trace.counters.snapshot();
    dmaIovaDestroy(fx.dev, new DmaIovaState(), G, BIDI, 0);
    dmaIovaFree(fx.dev, new DmaIovaState());
    expect(fx.platform.trace.counters.snapshot().diff(before).nonZero()).toEqual({});
  });
});

describe("dma_iova_free", () => {
  it("returns the IOVA at once, in lazy mode too", () => {
    const fx = makeKernel({ iommuMode: "lazy" });
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, state, unsafePhysAddr(0x10000), 8 * G)).toBe(true);
    const addr = state.addr;
    const { moved } = fx.delta(() => {
      dmaIovaFree(fx.dev, state);
    }, Counter.FlushQueueEntries);
    expect(moved).toEqual([0]);
    const again = new DmaIovaState();
    expect(dmaIovaTryAlloc(fx.dev, again, unsafePhysAddr(0x10000), 8 * G)).toBe(true);
    expect(again.addr).toBe(addr);
  });

  it("after a full unlink, free leaves no range in the IOVA domain once the caches are flushed", () => {
    const fx = makeKernel();
    const iovad = fx.dev.cookie!.iovad;
    const baseline = iovad.ranges();
    const buf = allocBuffer(fx.platform, 40 * G);
    const state = mapOne(fx.dev, buf.phys, buf.len);
    expect(iovad.ranges().length).toBe(baseline.length + 1);
    dmaIovaUnlink(fx.dev, state, 0, buf.len, BIDI, 0);
    dmaIovaFree(fx.dev, state);
    iovad.flushRcaches();
    expect(iovad.ranges()).toEqual(baseline);
    expect(fx.dev.domain!.mappedBytes).toBe(0);
  });
});

describe("dma_use_iova and dma_iova_size", () => {
  it("report the allocation and not the swiotlb flag", () => {
    const fx = makeKernel();
    const state = new DmaIovaState();
    expect(dmaUseIova(state)).toBe(false);
    expect(dmaIovaSize(state)).toBe(0);
    const buf = allocBuffer(fx.platform, 5000, { seed: 2 });
    expect(dmaIovaTryAlloc(fx.untrusted, state, unsafePhysAddr(buf.phys), buf.len)).toBe(true);
    expect(dmaIovaLink(fx.untrusted, state, unsafePhysAddr(buf.phys), 0, buf.len, BIDI, 0)).toBe(0);
    expect(state.useSwiotlb).toBe(true);
    expect(dmaUseIova(state)).toBe(true);
    expect(dmaIovaSize(state)).toBe(5000);
  });
});
