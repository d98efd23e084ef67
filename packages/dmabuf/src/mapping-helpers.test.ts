import { describe, expect, it } from "vitest";
import { DMA_BIT_MASK, DmaDebugError, DmaDirection, dmaSetMaskAndCoherent, unsafeDmaAddr } from "@dmasim/dma";
import { PAGE_SIZE, physAddr } from "@dmasim/memory";
import { SgTable } from "@dmasim/scatterlist";
import { Counter, DmaBufErrno, dmaBufFreeSgt, dmaBufPhysVecToSgt, VfioPciCoreDevice } from "./index.js";
import type { DmaBuf, DmaBufAttachment } from "./index.js";
import { dmaBufDynamicAttach } from "./dma-buf.js";
import { FAR_GPU, GPU, dmaBufRig, firstDiff, pattern } from "./test-fixtures.js";

const BIDI = DmaDirection.BIDIRECTIONAL;

/** A VFIO dma-buf of two 4-page ranges of BAR 0 of `bdf` (pages 0-3 and 8-11), attached by the importer. */
function twoRanges(bdf: string, kernelDebug: "throw" | "collect" = "throw") {
  const rig = dmaBufRig({ kernel: { debug: kernelDebug } });
  const vdev = new VfioPciCoreDevice(rig.sys, bdf);
  const buf = vdev.featureDmaBuf({ regionIndex: 0, openFlags: 0, flags: 0, dmaRanges: [{ offset: 0, length: 4 * PAGE_SIZE }, { offset: 8 * PAGE_SIZE, length: 4 * PAGE_SIZE }] }) as DmaBuf;
  const bar = rig.platform.endpoint(bdf).bars[0];
  if (bar === undefined) throw new Error("no BAR");
  const data = pattern(12 * PAGE_SIZE, 3);
  rig.platform.memory.write(bar.phys, data);
  const a = dmaBufDynamicAttach(buf, rig.importer, { allowPeer2peer: true, invalidateMappings: () => undefined }) as DmaBufAttachment;
  const expected = new Uint8Array(8 * PAGE_SIZE);
  expected.set(data.subarray(0, 4 * PAGE_SIZE), 0);
  expected.set(data.subarray(8 * PAGE_SIZE, 12 * PAGE_SIZE), 4 * PAGE_SIZE);
  const vec = [
    { paddr: bar.phys, len: 4 * PAGE_SIZE },
    { paddr: physAddr(bar.phys + 8 * PAGE_SIZE), len: 4 * PAGE_SIZE },
  ];
  return { ...rig, vdev, buf, a, bar, expected, vec };
}

describe("dma_buf_phys_vec_to_sgt", () => {
  it("BUS_ADDR (through the switch): one entry per range at paddr + bus_offset, no IOVA", () => {
    const { buf, a, expected, vec, platform } = twoRanges(GPU);
    buf.resv.lock();
    const before = platform.trace.counters.snapshot();
    const sgt = dmaBufPhysVecToSgt(a, buf.priv === undefined ? undefined : platform.providers[0], vec, 2, 8 * PAGE_SIZE, BIDI) as SgTable;
    expect(sgt.nents).toBe(2);
    expect(Array.from(sgt.dmaAddress)).toEqual([vec[0]?.paddr, vec[1]?.paddr]);
    expect(platform.trace.counters.snapshot().diff(before).get(Counter.DmaIovaTryAllocs)).toBe(0);
    const got = new Uint8Array(8 * PAGE_SIZE);
    // Device access through a table the helper made directly (not handed out by map) is checked as unmapped: read the fabric.
    for (let i = 0; i < 2; i++) got.set(platform.endpoint(a.dev.bdf).dmaRead(unsafeDmaAddr(sgt.dmaAddress[i] ?? 0), 4 * PAGE_SIZE), i * 4 * PAGE_SIZE);
    expect(firstDiff(got, expected)).toBe(-1);
    dmaBufFreeSgt(a, sgt, BIDI);
    expect(sgt.freed).toBe(true);
    buf.resv.unlock();
  });

  it("THRU_HOST_BRIDGE: one IOVA, each range linked at its running offset, one sync, one segment", () => {
    const { buf, a, expected, vec, platform } = twoRanges(FAR_GPU);
    buf.resv.lock();
    const before = platform.trace.counters.snapshot();
    const sgt = dmaBufPhysVecToSgt(a, platform.providers[0], vec, 2, 8 * PAGE_SIZE, BIDI) as SgTable;
    const d = platform.trace.counters.snapshot().diff(before);
    expect(d.get(Counter.DmaIovaTryAllocs)).toBe(1);
    expect(d.get(Counter.DmaIovaLinks)).toBe(2);
    expect(d.get(Counter.DmaIovaSyncs)).toBe(1);
    expect(sgt.nents).toBe(1);
    expect(sgt.dmaLength[0]).toBe(8 * PAGE_SIZE);
    expect(firstDiff(platform.endpoint(a.dev.bdf).dmaRead(unsafeDmaAddr(sgt.dmaAddress[0] ?? 0), 8 * PAGE_SIZE), expected)).toBe(-1);
    dmaBufFreeSgt(a, sgt, BIDI);
    buf.resv.unlock();
  });

  it("upstream's way (every range at IOVA offset 0) collides: dma-debug sees the overlap, the IOMMU refuses it", () => {
    const { buf, a, vec, platform, kernel } = twoRanges(FAR_GPU, "collect");
    buf.resv.lock();
    const sgt = dmaBufPhysVecToSgt(a, platform.providers[0], vec, 2, 8 * PAGE_SIZE, BIDI, "upstream");
    // The second dma_iova_link lands on the first range's IOVA: an error comes back and everything is unwound.
    expect(typeof sgt).toBe("number");
    expect(sgt).toBeLessThan(0);
    expect(kernel.debugReports().some((r) => r.check === "iova-link-overlap")).toBe(true);
    buf.resv.unlock();
  });

  it("upstream's way with dma-debug in throw mode stops at the overlapping link", () => {
    const { buf, a, vec, platform } = twoRanges(FAR_GPU, "throw");
    buf.resv.lock();
    expect(() => dmaBufPhysVecToSgt(a, platform.providers[0], vec, 2, 8 * PAGE_SIZE, BIDI, "upstream")).toThrow(DmaDebugError);
    buf.resv.unlock();
  });

  it("no provider or no P2P route is -EINVAL", () => {
    const rig = dmaBufRig({ hostBridgeP2p: "none" });
    const vdev = new VfioPciCoreDevice(rig.sys, FAR_GPU);
    const buf = vdev.featureDmaBuf({ regionIndex: 0, openFlags: 0, flags: 0, dmaRanges: [{ offset: 0, length: PAGE_SIZE }] }) as DmaBuf;
    const a = dmaBufDynamicAttach(buf, rig.importer, { allowPeer2peer: true, invalidateMappings: () => undefined }) as DmaBufAttachment;
    buf.resv.lock();
    const bar = rig.platform.endpoint(FAR_GPU).bars[0];
    const vec = [{ paddr: physAddr(bar?.phys ?? 0), len: PAGE_SIZE }];
    expect(dmaBufPhysVecToSgt(a, undefined, vec, 1, PAGE_SIZE, BIDI)).toBe(-DmaBufErrno.EINVAL);
    expect(dmaBufPhysVecToSgt(a, rig.platform.providers[0], vec, 1, PAGE_SIZE, BIDI)).toBe(-DmaBufErrno.EINVAL);
    buf.resv.unlock();
  });

  it("upstream's 32-bit running length truncates a buffer over 4 GiB; dmasim's covers it all", () => {
    const GiB = 2 ** 30;
    const rig = dmaBufRig({ barBytes: 8 * GiB });
    dmaSetMaskAndCoherent(rig.importer, DMA_BIT_MASK(64));
    const vdev = new VfioPciCoreDevice(rig.sys, FAR_GPU);
    const buf = vdev.featureDmaBuf({ regionIndex: 0, openFlags: 0, flags: 0, dmaRanges: [{ offset: 0, length: 4 * GiB }, { offset: 4 * GiB, length: 1 * GiB }] }) as DmaBuf;
    const a = dmaBufDynamicAttach(buf, rig.importer, { allowPeer2peer: true, invalidateMappings: () => undefined }) as DmaBufAttachment;
    const bar = rig.platform.endpoint(FAR_GPU).bars[0];
    const vec = [
      { paddr: physAddr(bar?.phys ?? 0), len: 4 * GiB },
      { paddr: physAddr((bar?.phys ?? 0) + 4 * GiB), len: 1 * GiB },
    ];
    buf.resv.lock();
    const ours = dmaBufPhysVecToSgt(a, rig.platform.providers[0], vec, 2, 5 * GiB, BIDI) as SgTable;
    let total = 0;
    for (let i = 0; i < ours.nents; i++) total += ours.dmaLength[i] ?? 0;
    expect(total).toBe(5 * GiB);
    dmaBufFreeSgt(a, ours, BIDI);
    // Upstream's way on one 5 GiB range (no offset collision with one range): `unsigned int mapped_len`
    // wraps to 1 GiB, so the one sync and the DMA segments cover 1 GiB of the 5.
    const theirs = dmaBufPhysVecToSgt(a, rig.platform.providers[0], [{ paddr: physAddr(vec[0]?.paddr ?? 0), len: 5 * GiB }], 1, 5 * GiB, BIDI, "upstream") as SgTable;
    let covered = 0;
    for (let i = 0; i < theirs.nents; i++) covered += theirs.dmaLength[i] ?? 0;
    expect(covered).toBe(1 * GiB);
    dmaBufFreeSgt(a, theirs, BIDI);
    buf.resv.unlock();
  });
});
