import { describe, expect, it } from "vitest";
import { DmaDirection } from "@dmasim/dma";
import { PAGE_SIZE } from "@dmasim/memory";
import { SgTable } from "@dmasim/scatterlist";
import {
  Counter,
  DmaBufDebugError,
  DmaBufErrno,
  DmaBufInputError,
  DmaBufStateError,
  DmaFence,
  DmaResvUsage,
  dmaBufAttach,
  dmaBufAttachRevocable,
  dmaBufDetach,
  dmaBufDeviceRead,
  dmaBufDeviceWrite,
  dmaBufDynamicAttach,
  dmaBufExport,
  dmaBufInvalidateMappings,
  dmaBufMapAttachment,
  dmaBufMapAttachmentUnlocked,
  dmaBufPin,
  dmaBufPut,
  dmaBufUnmapAttachment,
  dmaBufUnmapAttachmentUnlocked,
  dmaBufUnpin,
  getDmaBuf,
} from "./index.js";
import type { DmaBufAttachment, DmaBufOps } from "./index.js";
import { SystemHeap } from "./exporters/system-heap.js";
import { dmaBufRig, firstDiff, pattern } from "./test-fixtures.js";

const BIDI = DmaDirection.BIDIRECTIONAL;

function heapBuf(size = 16 * PAGE_SIZE) {
  const rig = dmaBufRig();
  const heap = new SystemHeap(rig.sys, { chunkBytes: 4 * PAGE_SIZE });
  const buf = heap.allocate(size);
  return { ...rig, heap, buf };
}

describe("dma_buf_export", () => {
  const map = () => -DmaBufErrno.ENOMEM;
  const unmap = () => undefined;
  const ok: DmaBufOps = { mapDmaBuf: map, unmapDmaBuf: unmap, release: () => undefined };
  it("refuses missing priv, map/unmap or release, and a lone pin, with the core's WARN and -EINVAL", () => {
    const { sys } = dmaBufRig({ debug: "collect" });
    expect(dmaBufExport(sys, { expName: "x", size: PAGE_SIZE, ops: ok, priv: undefined })).toBe(-DmaBufErrno.EINVAL);
    expect(dmaBufExport(sys, { expName: "x", size: PAGE_SIZE, ops: { release: () => undefined }, priv: {} })).toBe(-DmaBufErrno.EINVAL);
    expect(dmaBufExport(sys, { expName: "x", size: PAGE_SIZE, ops: { mapDmaBuf: map, unmapDmaBuf: unmap }, priv: {} })).toBe(-DmaBufErrno.EINVAL);
    expect(dmaBufExport(sys, { expName: "x", size: PAGE_SIZE, ops: { ...ok, pin: () => 0 }, priv: {} })).toBe(-DmaBufErrno.EINVAL);
    expect(sys.debug.count("api-warn")).toBe(4);
    expect(sys.buffers.size).toBe(0);
    expect(dmaBufExport(sys, { expName: "x", size: PAGE_SIZE, ops: ok, priv: {} })).not.toBeTypeOf("number");
  });

  it("rejects a bad size as input", () => {
    const { sys } = dmaBufRig();
    expect(() => {
      dmaBufExport(sys, { expName: "x", size: 0, ops: ok, priv: {} });
    }).toThrow(DmaBufInputError);
  });

  it("releases on the last put, with the exporter's release", () => {
    const { sys } = dmaBufRig();
    let released = 0;
    const buf = dmaBufExport(sys, { expName: "x", size: PAGE_SIZE, ops: { ...ok, release: () => {
        released++;
      } }, priv: {} });
    if (typeof buf === "number") throw new Error("export failed");
    getDmaBuf(buf);
    dmaBufPut(buf);
    expect(released).toBe(0);
    dmaBufPut(buf);
    expect(released).toBe(1);
    expect(sys.buffers.size).toBe(0);
    expect(() => {
      dmaBufPut(buf);
    }).toThrow(DmaBufStateError);
  });
});

describe("attach, map, device access", () => {
  it("a static importer maps with the unlocked wrapper and its device reads the buffer's bytes", () => {
    const { buf, heap, importer, platform } = heapBuf();
    const data = pattern(16 * PAGE_SIZE);
    heap.cpuWrite(buf, 0, data);
    const a = dmaBufAttach(buf, importer) as DmaBufAttachment;
    expect(a.peer2peer).toBe(false);
    expect(dmaBufAttachRevocable(a)).toBe(false);
    const before = platform.trace.counters.snapshot();
    const sgt = dmaBufMapAttachmentUnlocked(a, BIDI);
    expect(sgt).toBeInstanceOf(SgTable);
    if (!(sgt instanceof SgTable)) return;
    const got = new Uint8Array(16 * PAGE_SIZE);
    dmaBufDeviceRead(a, sgt, 0, got);
    expect(firstDiff(got, data)).toBe(-1);
    const d = platform.trace.counters.snapshot().diff(before);
    // One IOVA for the four chunks, 16 PTEs, one IOTLB sync.
    expect(d.get(Counter.DmaIovaTryAllocs)).toBe(1);
    expect(d.get(Counter.PteWrites)).toBe(16);
    expect(d.get(Counter.DmaIovaSyncs)).toBe(1);
    dmaBufUnmapAttachmentUnlocked(a, sgt, BIDI);
    dmaBufDetach(buf, a);
    dmaBufPut(buf);
  });

  it("map without the reservation lock is the resv-not-held finding and changes nothing", () => {
    const { buf, importer, platform } = heapBuf();
    const a = dmaBufDynamicAttach(buf, importer, { allowPeer2peer: true, invalidateMappings: () => undefined }) as DmaBufAttachment;
    const before = platform.trace.counters.snapshot();
    let err: unknown;
    try {
      dmaBufMapAttachment(a, BIDI);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DmaBufDebugError);
    expect((err as DmaBufDebugError).check).toBe("resv-not-held");
    expect(platform.trace.counters.snapshot().diff(before).get(Counter.PteWrites)).toBe(0);
    expect(a.liveMappings).toBe(0);
  });

  it("pin and unpin need the lock; pinning a static importer is WARNed", () => {
    const { buf, importer, sys } = heapBuf();
    const s = dmaBufAttach(buf, importer) as DmaBufAttachment;
    const d = dmaBufDynamicAttach(buf, importer, { allowPeer2peer: false }) as DmaBufAttachment;
    expect(() => {
      dmaBufPin(s);
    }).toThrow(DmaBufDebugError);
    buf.resv.lock();
    expect(() => {
      dmaBufPin(s);
    }).toThrow(DmaBufDebugError);
    expect(sys.debug.reports().map((r) => r.check)).toEqual(["resv-not-held", "api-warn"]);
    expect(dmaBufPin(d)).toBe(0);
    expect(d.pinCount).toBe(1);
    dmaBufUnpin(d);
    expect(d.pinCount).toBe(0);
    buf.resv.unlock();
  });

  it("detach of another buffer's attachment is bad input", () => {
    const { buf, heap, importer } = heapBuf();
    const other = heap.allocate(PAGE_SIZE);
    const a = dmaBufAttach(buf, importer) as DmaBufAttachment;
    expect(() => {
      dmaBufDetach(other, a);
    }).toThrow(DmaBufInputError);
    expect(buf.attachments).toContain(a);
  });
});

describe("invalidate_mappings and the rules around it", () => {
  function dynamic(onInvalidate: (a: DmaBufAttachment) => void = () => undefined) {
    const rig = heapBuf();
    const a = dmaBufDynamicAttach(rig.buf, rig.importer, { allowPeer2peer: true, invalidateMappings: onInvalidate }) as DmaBufAttachment;
    rig.buf.resv.lock();
    const sgt = dmaBufMapAttachment(a, BIDI) as SgTable;
    rig.buf.resv.unlock();
    return { ...rig, a, sgt };
  }

  it("calls the importer under the lock; the invalidation is quiesced when it unmaps", () => {
    let calls = 0;
    const { buf, a, sgt, sys } = dynamic((att) => {
      calls++;
      expect(att.dmabuf.resv.isLocked).toBe(true);
    });
    buf.resv.lock();
    dmaBufInvalidateMappings(buf);
    expect(calls).toBe(1);
    const rec = sys.invalidations.records[0];
    expect(rec?.subscribers).toBe(1);
    expect(rec?.tQuiesced).toBeUndefined();
    dmaBufUnmapAttachment(a, sgt, BIDI);
    expect(rec?.tQuiesced).toBe(sys.trace.clock.now);
    buf.resv.unlock();
  });

  it("an importer taking the lock inside its callback is resv-relock-in-invalidate", () => {
    const { buf, sys } = dynamic((att) => {
      att.dmabuf.resv.lock();
    });
    buf.resv.lock();
    expect(() => {
      dmaBufInvalidateMappings(buf);
    }).toThrow(DmaBufDebugError);
    expect(sys.debug.reports()[0]?.check).toBe("resv-relock-in-invalidate");
  });

  it("a device write after invalidation and DMA after unmap are findings; reads in between are allowed", () => {
    const { buf, a, sgt, sys } = dynamic();
    buf.resv.lock();
    dmaBufInvalidateMappings(buf);
    dmaBufDeviceRead(a, sgt, 0, new Uint8Array(8)); // speculative read: allowed
    expect(() => {
      dmaBufDeviceWrite(a, sgt, 0, new Uint8Array(8));
    }).toThrow(DmaBufDebugError);
    dmaBufUnmapAttachment(a, sgt, BIDI);
    buf.resv.unlock();
    expect(() => {
      dmaBufDeviceRead(a, sgt, 0, new Uint8Array(8));
    }).toThrow(DmaBufDebugError);
    expect(sys.debug.reports().map((r) => r.check)).toEqual(["write-after-invalidate", "dma-after-unmap"]);
  });

  it("DMA before the KERNEL fence signalled is a finding; waiting for it advances the clock", () => {
    const { buf, a, sgt, sys } = dynamic();
    const t0 = sys.trace.clock.now;
    buf.resv.lock();
    buf.resv.addFence(new DmaFence("copy", 1, t0 + 5000), DmaResvUsage.KERNEL);
    buf.resv.unlock();
    expect(() => {
      dmaBufDeviceRead(a, sgt, 0, new Uint8Array(8));
    }).toThrow(DmaBufDebugError);
    expect(sys.debug.reports()[0]?.check).toBe("dma-before-kernel-fence");
    expect(buf.resv.waitTimeout(DmaResvUsage.KERNEL, true, 1000)).toBe(0); // timed out
    expect(sys.trace.clock.now).toBe(t0 + 1000);
    expect(buf.resv.waitTimeout(DmaResvUsage.KERNEL, true)).toBeGreaterThan(0);
    expect(sys.trace.clock.now).toBe(t0 + 5000);
    dmaBufDeviceRead(a, sgt, 0, new Uint8Array(8));
  });

  it("a static importer's map waits for the KERNEL fences itself", () => {
    const { buf, importer, sys } = heapBuf();
    const t0 = sys.trace.clock.now;
    buf.resv.lock();
    buf.resv.addFence(new DmaFence("copy", 1, t0 + 7000), DmaResvUsage.KERNEL);
    buf.resv.addFence(new DmaFence("render", 1, t0 + 90000), DmaResvUsage.READ);
    buf.resv.unlock();
    const s = dmaBufAttach(buf, importer) as DmaBufAttachment;
    const sgt = dmaBufMapAttachmentUnlocked(s, BIDI) as SgTable;
    expect(sys.trace.clock.now).toBe(t0 + 7000); // KERNEL only, not the READ fence
    dmaBufDeviceRead(s, sgt, 0, new Uint8Array(4));
  });
});
