import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DmaDirection } from "@dmasim/dma";
import { MiB, PAGE_SIZE } from "@dmasim/memory";
import { Counter, DmaBufErrno, DmaBufImportMap, DmaBufInputError, DmaResvUsage, GpuVramExporter, VfioPciCoreDevice, dmaBufDetach, dmaBufDeviceRead, dmaBufDynamicAttach } from "./index.js";
import type { DmaBuf, DmaBufAttachment } from "./index.js";
import { GPU, dmaBufRig, firstDiff, pattern } from "./test-fixtures.js";

function rig() {
  const r = dmaBufRig();
  const gpu = new GpuVramExporter(r.sys, { bdf: GPU, blockBytes: 2 * MiB });
  const buf = gpu.allocate(4 * MiB, "ram");
  const data = pattern(4 * MiB, 5);
  gpu.cpuWrite(buf, 0, data);
  const attach = dmaBufDynamicAttach(buf, r.importer, { allowPeer2peer: true, invalidateMappings: () => undefined }) as DmaBufAttachment;
  return { ...r, gpu, buf, data, attach };
}

/** The bytes the importer's device reads through the map's current mapping. */
function deviceReads(attach: DmaBufAttachment, m: DmaBufImportMap, len: number): Uint8Array {
  const out = new Uint8Array(len);
  const dm = m.deviceMapping;
  if (dm === undefined) throw new Error("not mapped");
  dmaBufDeviceRead(attach, dm, 0, out);
  return out;
}

describe("DmaBufImportMap: one mapping step for every importer", () => {
  it.each(["sgt", "phys"] as const)("%s: maps once, the device reads the buffer, segments cover it, unmapping returns everything", (type) => {
    const { buf, data, attach, sys } = rig();
    const m = new DmaBufImportMap(attach, type);
    expect(buf.resv.lock()).toBe(0);
    expect(m.mapLocked()).toBe(0);
    const first = m.deviceMapping;
    expect(m.mapLocked()).toBe(0);
    expect(m.deviceMapping).toBe(first);
    expect(m.mapped).toBe(true);
    expect(type === "sgt" ? m.sgt !== undefined && m.physDma === undefined : m.sgt === undefined && m.physList !== undefined && m.physDma !== undefined).toBe(true);
    let bytes = 0;
    for (let i = 0; i < m.nrSegments; i++) bytes += m.segmentDmaLen?.[i] ?? 0;
    expect(bytes).toBe(4 * MiB);
    expect(firstDiff(deviceReads(attach, m, 4 * MiB), data)).toBe(-1);
    m.unmapLocked(false);
    buf.resv.unlock();
    expect(m.mapped).toBe(false);
    expect(m.nrSegments).toBe(0);
    dmaBufDetach(buf, attach);
    const leaks = sys.leaks();
    expect(leaks.attachments + leaks.mappings).toBe(0);
  });

  it("phys: unmapping with keepIova keeps the IOVA; the next map relinks into it after a move (no allocation); freeKeptIova gives it back", () => {
    const { gpu, buf, data, attach, platform } = rig();
    const m = new DmaBufImportMap(attach, "phys");
    expect(buf.resv.lock()).toBe(0);
    expect(m.mapLocked()).toBe(0);
    const addr = m.physDma?.state?.addr;
    m.unmapLocked(true);
    buf.resv.unlock();
    expect(m.keptIova).toBe(true);
    expect(gpu.migrate(buf, "vram", [1])).toBe(1);
    const before = platform.trace.counters.snapshot();
    expect(buf.resv.lock()).toBe(0);
    expect(m.mapLocked()).toBe(0);
    expect(m.keptIova).toBe(false);
    expect(m.physDma?.state?.addr).toBe(addr);
    // The move's copy: wait for the KERNEL fence before the device reads.
    expect(buf.resv.waitTimeout(DmaResvUsage.KERNEL, true)).toBeGreaterThan(0);
    buf.resv.unlock();
    const d = platform.trace.counters.snapshot().diff(before);
    expect(d.get(Counter.IovaAllocCache) + d.get(Counter.IovaAllocTree)).toBe(0);
    expect(firstDiff(deviceReads(attach, m, 4 * MiB), data)).toBe(-1);
    expect(buf.resv.lock()).toBe(0);
    m.unmapLocked(true);
    buf.resv.unlock();
    const beforeFree = platform.trace.counters.snapshot();
    m.freeKeptIova();
    m.freeKeptIova();
    const f = platform.trace.counters.snapshot().diff(beforeFree);
    expect(f.get(Counter.IovaFreeCache) + f.get(Counter.IovaFreeTree)).toBe(1);
    expect(m.keptIova).toBe(false);
    dmaBufDetach(buf, attach);
  });

  it.each(["sgt", "phys"] as const)("%s: a refusal of the exporter (a revoked VFIO BAR: -ENODEV) is returned and leaves nothing mapped", (type) => {
    const r = dmaBufRig();
    const vdev = new VfioPciCoreDevice(r.sys, GPU);
    const buf = vdev.featureDmaBuf({ regionIndex: 0, openFlags: 0, flags: 0, dmaRanges: [{ offset: 0, length: 8 * PAGE_SIZE }] }) as DmaBuf;
    const attach = dmaBufDynamicAttach(buf, r.importer, { allowPeer2peer: true, invalidateMappings: () => undefined }) as DmaBufAttachment;
    const m = new DmaBufImportMap(attach, type);
    expect(vdev.setMemoryEnable(false).done).toBe(true);
    expect(buf.resv.lock()).toBe(0);
    expect(m.mapLocked()).toBe(-DmaBufErrno.ENODEV);
    buf.resv.unlock();
    expect(m.mapped).toBe(false);
    expect(attach.liveMappings).toBe(0);
    dmaBufDetach(buf, attach);
    vdev.close();
  });

  it("bad input throws DmaBufInputError", () => {
    const { attach } = rig();
    expect(() => new DmaBufImportMap(null as unknown as DmaBufAttachment, "sgt")).toThrow(DmaBufInputError);
    expect(() => new DmaBufImportMap(attach, "pal" as "sgt")).toThrow(DmaBufInputError);
    expect(() => new DmaBufImportMap(attach, "sgt", 7 as DmaDirection)).toThrow(DmaBufInputError);
  });

  it("property: over moves, maps and unmaps (IOVA kept or not) of either type, the device reads the buffer's bytes and nothing leaks", () => {
    type Op = { kind: "migrate"; to: "vram" | "ram"; block: number } | { kind: "map" } | { kind: "unmap"; keepIova: boolean } | { kind: "cpuWrite"; offset: number; value: number };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant("migrate" as const), to: fc.constantFrom("vram" as const, "ram" as const), block: fc.integer({ min: 0, max: 1 }) }),
      fc.record({ kind: fc.constant("map" as const) }),
      fc.record({ kind: fc.constant("unmap" as const), keepIova: fc.boolean() }),
      fc.record({ kind: fc.constant("cpuWrite" as const), offset: fc.integer({ min: 0, max: 4 * MiB - 1 }), value: fc.integer({ min: 0, max: 255 }) }),
    );
    fc.assert(
      fc.property(fc.constantFrom("sgt" as const, "phys" as const), fc.array(opArb, { maxLength: 12 }), (type, ops) => {
        const { gpu, buf, data, attach, platform, sys } = rig();
        const want = data.slice();
        const before = platform.trace.counters.snapshot();
        const m = new DmaBufImportMap(attach, type);
        const locked = (f: () => void): void => {
          expect(buf.resv.lock()).toBe(0);
          try {
            f();
          } finally {
            buf.resv.unlock();
          }
        };
        for (const op of ops) {
          if (op.kind === "migrate") {
            // The importer's invalidate callback is a no-op here: drop the mapping first, as a dynamic importer would.
            locked(() => { m.unmapLocked(true); });
            gpu.migrate(buf, op.to, [op.block]);
          } else if (op.kind === "unmap") {
            locked(() => { m.unmapLocked(op.keepIova); });
            expect(m.mapped).toBe(false);
            if (!op.keepIova) expect(m.keptIova).toBe(false);
          } else if (op.kind === "cpuWrite") {
            gpu.cpuWrite(buf, op.offset, new Uint8Array([op.value]));
            want[op.offset] = op.value;
          } else {
            locked(() => {
              expect(m.mapLocked()).toBe(0);
              expect(buf.resv.waitTimeout(DmaResvUsage.KERNEL, true)).toBeGreaterThan(0);
            });
            expect(firstDiff(deviceReads(attach, m, 4 * MiB), want)).toBe(-1);
          }
        }
        locked(() => { m.unmapLocked(false); });
        expect(m.keptIova).toBe(false);
        dmaBufDetach(buf, attach);
        const d = platform.trace.counters.snapshot().diff(before);
        expect(d.get(Counter.IovaAllocCache) + d.get(Counter.IovaAllocTree)).toBe(d.get(Counter.IovaFreeCache) + d.get(Counter.IovaFreeTree));
        expect(sys.leaks().mappings + sys.leaks().attachments).toBe(0);
      }),
      { numRuns: 25 },
    );
  });
});
