import { describe, expect, it } from "vitest";
import { Counter } from "./counters.js";
import { dmaAllocCoherent, dmaFreeCoherent } from "./coherent.js";
import { kCoherentAllocs } from "./device.js";
import { DmaDirection, dmaAddr } from "./constants.js";
import { DmaDebugError } from "./debug/errors.js";
import { dmaMapPhys, dmaMappingError, dmaSyncSingleForCpu, dmaSyncSingleForDevice, dmaUnmapPhys } from "./mapping.js";
import { TRUSTED_BDF, UNTRUSTED_BDF, allocBuffer, makeKernel, tryDmaRead } from "./test-fixtures.js";
import type { Fixture } from "./test-fixtures.js";
import { physAddr } from "@dmasim/memory";

// Every refusal checks everything first and then acts: a call that dma-debug refuses in "throw" mode (or a
// kernel-state refusal) leaves the page tables, the IOVA space, swiotlb, the debug bookkeeping and every
// counter but the finding's own as they were, and the mapping it was about keeps working.

const TO_DEV = DmaDirection.TO_DEVICE;

interface State {
  mapped: number;
  untrustedMapped: number;
  iovas: number;
  slots: number;
  entries: number;
  free: number;
  counters: Record<string, number>;
}

function state(f: Fixture): State {
  const iovad = f.dev.cookie?.iovad;
  const counters = { ...f.platform.trace.counters.snapshot().nonZero() };
  // The finding itself, and the page descriptors dma-debug's checks read to make it.
  delete counters.DmaDebugErrors;
  delete counters.PageDescLookups;
  return {
    mapped: f.dev.domain?.mappedBytes ?? 0,
    untrustedMapped: f.untrusted.domain?.mappedBytes ?? 0,
    iovas: iovad?.liveRanges ?? 0,
    slots: f.kernel.swiotlb?.stats.used ?? 0,
    entries: f.kernel.debug.entries().length,
    free: f.platform.memory.allocator.freeBytes,
    counters,
  };
}

function refusedWith(f: Fixture, check: string, call: () => unknown): void {
  const before = state(f);
  let err: unknown;
  try {
    call();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(DmaDebugError);
  expect((err as DmaDebugError).report.check).toBe(check);
  expect(state(f)).toEqual(before);
}

describe("refusals change nothing (debug: throw)", () => {
  it("dma_unmap_phys with the wrong size or direction, or of an address never mapped: the mapping stays and still works", () => {
    const f = makeKernel();
    const buf = allocBuffer(f.platform, 8192);
    const addr = dmaMapPhys(f.dev, physAddr(buf.phys), 8192, TO_DEV);
    expect(dmaMappingError(f.dev, addr)).toBe(0);
    refusedWith(f, "unmap-size-mismatch", () => { dmaUnmapPhys(f.dev, addr, 4096, TO_DEV); });
    refusedWith(f, "unmap-direction-mismatch", () => { dmaUnmapPhys(f.dev, addr, 8192, DmaDirection.FROM_DEVICE); });
    refusedWith(f, "unmap-not-mapped", () => { dmaUnmapPhys(f.dev, dmaAddr(addr + 0x100000), 4096, TO_DEV); });
    expect(tryDmaRead(f.endpoint(f.dev), addr, 8192)).toEqual(buf.bytes);
    dmaUnmapPhys(f.dev, addr, 8192, TO_DEV);
    expect(f.kernel.debug.entries()).toEqual([]);
  });

  it("a bounced (untrusted) mapping: a refused unmap leaves the bounce slot and the bytes the device reads", () => {
    const f = makeKernel();
    const buf = allocBuffer(f.platform, 4096);
    const addr = dmaMapPhys(f.untrusted, physAddr(buf.phys + 8), 100, TO_DEV);
    expect(dmaMappingError(f.untrusted, addr)).toBe(0);
    refusedWith(f, "unmap-size-mismatch", () => { dmaUnmapPhys(f.untrusted, addr, 99, TO_DEV); });
    expect(tryDmaRead(f.endpoint(UNTRUSTED_BDF), addr, 100)).toEqual(buf.bytes.subarray(8, 108));
    dmaUnmapPhys(f.untrusted, addr, 100, TO_DEV);
    expect(f.kernel.swiotlb?.stats.used).toBe(0);
  });

  it("syncs of unmapped memory, past the end, or in the wrong direction move no byte", () => {
    const f = makeKernel({ devices: { [TRUSTED_BDF]: { coherent: false } } });
    const buf = allocBuffer(f.platform, 4096);
    const addr = dmaMapPhys(f.dev, physAddr(buf.phys), 4096, TO_DEV);
    expect(dmaMappingError(f.dev, addr)).toBe(0);
    refusedWith(f, "sync-not-mapped", () => { dmaSyncSingleForCpu(f.dev, dmaAddr(addr + 0x100000), 64, TO_DEV); });
    refusedWith(f, "sync-out-of-range", () => { dmaSyncSingleForDevice(f.dev, dmaAddr(addr + 4000), 200, TO_DEV); });
    refusedWith(f, "sync-direction-mismatch", () => { dmaSyncSingleForDevice(f.dev, addr, 64, DmaDirection.FROM_DEVICE); });
    dmaUnmapPhys(f.dev, addr, 4096, TO_DEV);
  });

  it("dma_free_coherent with the wrong size or CPU address: the buffer stays allocated and mapped", () => {
    const f = makeKernel();
    const a = dmaAllocCoherent(f.dev, 8192);
    expect(a).toBeDefined();
    if (a === undefined) return;
    f.platform.memory.write(a.cpuAddr, new Uint8Array([1, 2, 3, 4]));
    refusedWith(f, "unmap-size-mismatch", () => { dmaFreeCoherent(f.dev, 4096, a.cpuAddr, a.dmaHandle); });
    refusedWith(f, "unmap-cpu-address-mismatch", () => { dmaFreeCoherent(f.dev, 8192, physAddr(a.cpuAddr + 4096), a.dmaHandle); });
    expect(Array.from(tryDmaRead(f.endpoint(f.dev), a.dmaHandle, 4) as Uint8Array)).toEqual([1, 2, 3, 4]);
    dmaFreeCoherent(f.dev, 8192, a.cpuAddr, a.dmaHandle);
    expect(f.dev[kCoherentAllocs].size).toBe(0);
  });

  it("a map refused for an overlapping cache line allocates no IOVA and records nothing", () => {
    const f = makeKernel();
    const buf = allocBuffer(f.platform, 4096);
    const addr = dmaMapPhys(f.dev, physAddr(buf.phys), 64, DmaDirection.FROM_DEVICE);
    expect(dmaMappingError(f.dev, addr)).toBe(0);
    const before = f.platform.trace.counters.get(Counter.DmaMapCalls);
    refusedWith(f, "cacheline-overlap", () => dmaMapPhys(f.dev, physAddr(buf.phys + 32), 64, DmaDirection.FROM_DEVICE));
    expect(f.platform.trace.counters.get(Counter.DmaMapCalls)).toBe(before);
    dmaUnmapPhys(f.dev, addr, 64, DmaDirection.FROM_DEVICE);
  });

  it("an unbind refused for leaks leaves the device bound and its mappings working", () => {
    const f = makeKernel();
    const buf = allocBuffer(f.platform, 4096);
    const addr = dmaMapPhys(f.dev, physAddr(buf.phys), 4096, TO_DEV);
    expect(dmaMappingError(f.dev, addr)).toBe(0);
    refusedWith(f, "leak", () => f.kernel.unbind(f.dev));
    expect(f.dev.bound).toBe(true);
    expect(f.kernel.device(TRUSTED_BDF)).toBe(f.dev);
    expect(tryDmaRead(f.endpoint(f.dev), addr, 4096)).toEqual(buf.bytes);
    dmaUnmapPhys(f.dev, addr, 4096, TO_DEV);
    expect(f.kernel.unbind(f.dev).leakedMappings).toEqual([]);
  });
});
