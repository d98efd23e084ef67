import { describe, expect, it } from "vitest";
import { DmaDirection } from "@dmasim/dma";
import { MiB, PAGE_SIZE, physAddr, unsafePhysAddr } from "@dmasim/memory";
import type { SgTable } from "@dmasim/scatterlist";
import {
  DmaBufErrno,
  DmaBufImporter,
  DmaBufInputError,
  DmaBufStateError,
  DmaFence,
  GpuVramExporter,
  SystemHeap,
  VfioPciCoreDevice,
  dmaBufAttach,
  dmaBufDetach,
  dmaBufDynamicAttach,
  dmaBufMapAttachmentUnlocked,
  dmaBufPhysListAlloc,
  dmaBufPhysListSet,
  dmaBufUnmapAttachmentUnlocked,
} from "./index.js";
import type { DmaBuf, DmaBufAttachment } from "./index.js";
import { GPU, dmaBufRig } from "./test-fixtures.js";

const BIDI = DmaDirection.BIDIRECTIONAL;

describe("bad input is a typed error and changes nothing", () => {
  it("VFIO: malformed requests are DmaBufInputError; kernel refusals are errnos; nothing is exported", () => {
    const { sys } = dmaBufRig();
    const vdev = new VfioPciCoreDevice(sys, GPU);
    expect(() => vdev.featureDmaBuf({ regionIndex: 0, openFlags: 0, flags: 0, dmaRanges: [{ offset: -1, length: PAGE_SIZE }] })).toThrow(DmaBufInputError);
    expect(() => vdev.featureDmaBuf({ regionIndex: 0.5, openFlags: 0, flags: 0, dmaRanges: [] })).toThrow(DmaBufInputError);
    expect(() => vdev.featureDmaBuf(null as never)).toThrow(DmaBufInputError);
    // A total with bit 63 set (here: past 2^53, which no safe integer reaches either) is -EINVAL.
    expect(vdev.featureDmaBuf({ regionIndex: 0, openFlags: 0, flags: 0, dmaRanges: [{ offset: 0, length: 2 ** 52 }, { offset: 0, length: 2 ** 52 }] })).toBe(-DmaBufErrno.EINVAL);
    expect(sys.buffers.size).toBe(0);
    expect(vdev.dmabufs.length).toBe(0);
  });

  it("a foreign attachment or sg_table is refused before anything changes", () => {
    const { sys, importer } = dmaBufRig();
    const heap = new SystemHeap(sys);
    const a = heap.allocate(PAGE_SIZE);
    const b = heap.allocate(PAGE_SIZE);
    const aa = dmaBufAttach(a, importer) as DmaBufAttachment;
    const ba = dmaBufAttach(b, importer) as DmaBufAttachment;
    const sgt = dmaBufMapAttachmentUnlocked(aa, BIDI) as SgTable;
    expect(() => {
      dmaBufUnmapAttachmentUnlocked(ba, sgt, BIDI);
    }).toThrow(DmaBufInputError);
    expect(() => {
      dmaBufDetach(b, aa);
    }).toThrow(DmaBufInputError);
    expect(aa.liveMappings).toBe(1);
    dmaBufUnmapAttachmentUnlocked(aa, sgt, BIDI);
    expect(() => {
      dmaBufUnmapAttachmentUnlocked(aa, sgt, BIDI);
    }).toThrow(DmaBufStateError);
    expect(() => dmaBufDynamicAttach(a, importer, { allowPeer2peer: "yes" } as never)).toThrow(DmaBufInputError);
    expect(() => dmaBufMapAttachmentUnlocked(aa, 7 as never)).toThrow(DmaBufInputError);
  });

  it("physical-range lists: a P2P range outside the provider, or one without a provider, is refused", () => {
    const { sys } = dmaBufRig();
    const gpu = new GpuVramExporter(sys, { bdf: GPU, blockBytes: MiB });
    const list = dmaBufPhysListAlloc(2, gpu.provider);
    expect(() => {
      dmaBufPhysListSet(list, 0, physAddr(gpu.provider.phys + gpu.provider.size), PAGE_SIZE, true);
    }).toThrow(DmaBufInputError);
    expect(() => {
      dmaBufPhysListSet(dmaBufPhysListAlloc(1, undefined), 0, physAddr(0), PAGE_SIZE, true);
    }).toThrow(DmaBufInputError);
    // The brand is a compile-time promise; an address that is not one is still refused at run time.
    expect(() => {
      dmaBufPhysListSet(list, 0, unsafePhysAddr(-4096), PAGE_SIZE, false);
    }).toThrow(DmaBufInputError);
    expect(() => dmaBufPhysListAlloc(0, undefined)).toThrow(DmaBufInputError);
    expect(list.size).toBe(0);
  });

  it("fences, waits and migrations check their arguments", () => {
    const { sys } = dmaBufRig();
    const gpu = new GpuVramExporter(sys, { bdf: GPU, blockBytes: MiB });
    const buf = gpu.allocate(2 * MiB);
    expect(() => new DmaFence("x", 1, Number.NaN)).toThrow(DmaBufInputError);
    expect(() => buf.resv.waitTimeout(4 as never, true)).toThrow(DmaBufInputError);
    expect(() => gpu.migrate(buf, "disk" as never)).toThrow(DmaBufInputError);
    expect(() => gpu.migrate(buf, "ram", [5])).toThrow(DmaBufInputError);
    expect(gpu.placement(buf)).toEqual([true, true]);
  });

  it("a map that finds the lock held returns -EDEADLK; a dynamic importer's wait that times out is -ETIMEDOUT", () => {
    const { sys, importer } = dmaBufRig({ debug: "collect" });
    const gpu = new GpuVramExporter(sys, { bdf: GPU, blockBytes: MiB });
    const buf: DmaBuf = gpu.allocate(MiB);
    const imp = DmaBufImporter.attach(buf, importer) as DmaBufImporter;
    buf.resv.lock();
    expect(imp.ensureMapped()).toBe(-DmaBufErrno.EDEADLK);
    buf.resv.unlock();
    expect(gpu.migrate(buf, "ram")).toBe(1);
    expect(imp.ensureMapped(10)).toBe(-DmaBufErrno.ETIMEDOUT);
    expect(imp.ensureMapped()).toBe(0);
    imp.close();
  });
});
