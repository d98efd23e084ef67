import { describe, expect, it } from "vitest";
import { MiB, PAGE_SIZE } from "@dmasim/memory";
import { DmaDirection } from "@dmasim/dma";
import type { SgTable } from "@dmasim/scatterlist";
import {
  Counter,
  DmaBufDebugError,
  DmaBufErrno,
  DmaBufImporter,
  DmaResvUsage,
  GpuVramExporter,
  VfioPciCoreDevice,
  dmaBufAttach,
  dmaBufDetach,
  dmaBufDeviceRead,
  dmaBufMapAttachmentUnlocked,
  dmaBufUnmapAttachmentUnlocked,
} from "./index.js";
import type { DmaBuf, DmaBufAttachment } from "./index.js";
import { GPU, dmaBufRig, firstDiff, pattern } from "./test-fixtures.js";

function gpuRig(options: { hostBridgeP2p?: "none" | "any"; debug?: "throw" | "collect" } = {}) {
  const rig = dmaBufRig(options);
  const gpu = new GpuVramExporter(rig.sys, { bdf: GPU, blockBytes: 2 * MiB });
  return { ...rig, gpu };
}

describe("GPU VRAM exporter", () => {
  it("an importer under the same switch reads VRAM by bus address: no IOVA, no PTE", () => {
    const { gpu, importer, platform } = gpuRig();
    const buf = gpu.allocate(4 * MiB);
    const data = pattern(4 * MiB);
    gpu.cpuWrite(buf, 0, data);
    const imp = DmaBufImporter.attach(buf, importer, { mapping: "sgt" }) as DmaBufImporter;
    const before = platform.trace.counters.snapshot();
    expect(firstDiff(imp.read(0, 4 * MiB), data)).toBe(-1);
    expect(platform.trace.counters.snapshot().diff(before).get(Counter.PteWrites)).toBe(0);
    imp.close();
  });

  it("migrating VRAM→RAM copies every byte, fences the copy, invalidates; the importer remaps and waits", () => {
    const { gpu, importer, platform, sys } = gpuRig();
    const buf = gpu.allocate(8 * MiB);
    const data = pattern(8 * MiB, 5);
    gpu.cpuWrite(buf, 0, data);
    for (const mapping of ["sgt", "phys"] as const) {
      const imp = DmaBufImporter.attach(buf, importer, { mapping }) as DmaBufImporter;
      expect(imp.read(0, 16)).toEqual(data.subarray(0, 16));
      const to = gpu.placement(buf)[0] === true ? "ram" : "vram";
      const t0 = sys.trace.clock.now;
      const before = platform.trace.counters.snapshot();
      expect(gpu.migrate(buf, to)).toBe(4);
      expect(imp.invalidations).toBe(1);
      expect(imp.isMapped).toBe(false);
      expect(buf.resv.testSignaled(DmaResvUsage.KERNEL)).toBe(false);
      // The next access maps again and waits for the copy: 8 MiB at 25 bytes/ns.
      expect(firstDiff(imp.read(0, 8 * MiB), data)).toBe(-1);
      expect(sys.trace.clock.now).toBeGreaterThanOrEqual(t0 + (8 * MiB) / 25);
      const d = platform.trace.counters.snapshot().diff(before);
      expect(d.get(Counter.DmaBufMigratedBytes)).toBe(8 * MiB);
      expect(d.get(Counter.DmaBufFenceWaits)).toBe(1);
      expect(d.get(Counter.PteWrites) > 0).toBe(to === "ram");
      imp.close();
    }
    expect(sys.invalidations.records.map((r) => r.tQuiesced !== undefined)).toEqual([true, true]);
    // Time to the first DMA after each move: the remap waited for the copy's fence first.
    for (const r of sys.invalidations.records) expect(r.tFirstDmaAfter).toBeGreaterThanOrEqual(r.tStart + (8 * MiB) / 25);
  });

  it("a physical-range importer keeps its IOVA across moves: the remap links into it, no new allocation", () => {
    const { gpu, importer, platform } = gpuRig();
    const buf = gpu.allocate(8 * MiB, "ram");
    const data = pattern(8 * MiB, 11);
    gpu.cpuWrite(buf, 0, data);
    const imp = DmaBufImporter.attach(buf, importer, { mapping: "phys" }) as DmaBufImporter;
    expect(firstDiff(imp.read(0, 8 * MiB), data)).toBe(-1);
    const before = platform.trace.counters.snapshot();
    for (const [to, block] of [["vram", 0], ["ram", 0], ["vram", 2]] as const) {
      expect(gpu.migrate(buf, to, [block])).toBe(1);
      expect(firstDiff(imp.read(0, 8 * MiB), data)).toBe(-1);
    }
    const d = platform.trace.counters.snapshot().diff(before);
    expect(d.get(Counter.IovaAllocCache) + d.get(Counter.IovaAllocTree)).toBe(0);
    expect(d.get(Counter.DmaIovaSyncs)).toBe(3);
    imp.close();
    const report = platform.trace.counters.snapshot().diff(before);
    expect(report.get(Counter.IovaFreeCache) + report.get(Counter.IovaFreeTree)).toBe(1);
  });

  it("costs: the copy at the assumed rate, the importer's fence wait, and the rebind priced by the DMA profile", () => {
    const { gpu, importer, sys, platform } = gpuRig();
    const buf = gpu.allocate(4 * MiB);
    const imp = DmaBufImporter.attach(buf, importer) as DmaBufImporter;
    expect(imp.ensureMapped()).toBe(0);
    const before = platform.trace.counters.snapshot();
    gpu.migrate(buf, "ram");
    expect(imp.ensureMapped()).toBe(0);
    const c = sys.costs(before);
    const line = (what: string) => c.lines.find((l) => l.what.startsWith(what));
    expect(line("exporter copies")?.ns).toBe((4 * MiB) / 25);
    expect(line("exporter copies")?.assumed).toBe(true);
    expect(line("fence waits")?.ns).toBe((4 * MiB) / 25); // nothing else ran: the importer waited the whole copy
    expect(line("DMA mapping")?.ns).toBeGreaterThan(0);
    expect(c.totalNs).toBe((4 * MiB) / 25 + c.dma.totalNs);
    expect(c.counters.DmaBufMigrations).toBe(1);
    imp.close();
  });

  it("part of a buffer moves: a mix of P2P and RAM ranges, both reached", () => {
    const { gpu, importer } = gpuRig();
    const buf = gpu.allocate(8 * MiB);
    const data = pattern(8 * MiB, 9);
    gpu.cpuWrite(buf, 0, data);
    expect(gpu.migrate(buf, "ram", [1, 3])).toBe(2);
    expect(gpu.placement(buf)).toEqual([true, false, true, false]);
    const imp = DmaBufImporter.attach(buf, importer, { mapping: "phys" }) as DmaBufImporter;
    expect(firstDiff(imp.read(0, 8 * MiB), data)).toBe(-1);
    const list = imp.physList;
    expect(list?.nrRanges).toBe(4);
    expect([0, 1, 2, 3].map((i) => list?.isP2p(i))).toEqual([true, false, true, false]);
    imp.close();
  });

  it("VRAM pressure evicts the least recently used buffer to RAM, keeping its bytes", () => {
    const { gpu, importer } = gpuRig();
    const a = gpu.allocate(48 * MiB);
    const data = pattern(48 * MiB, 2);
    gpu.cpuWrite(a, 0, data);
    const imp = DmaBufImporter.attach(a, importer) as DmaBufImporter;
    expect(imp.read(0, 8)).toEqual(data.subarray(0, 8));
    const b = gpu.allocate(32 * MiB);
    expect(gpu.placement(b).every((v) => v)).toBe(true);
    expect(gpu.placement(a).every((v) => !v)).toBe(true);
    expect(imp.invalidations).toBe(1);
    expect(firstDiff(imp.read(0, 48 * MiB), data)).toBe(-1);
    imp.close();
  });

  it("a pinned buffer does not move (-EBUSY); a static importer gets the buffer in RAM", () => {
    const { gpu, importer } = gpuRig();
    const buf = gpu.allocate(2 * MiB);
    const pinned = DmaBufImporter.attach(buf, importer, { pinned: true }) as DmaBufImporter;
    expect(pinned.ensureMapped()).toBe(0);
    expect(gpu.migrate(buf, "ram")).toBe(-DmaBufErrno.EBUSY);
    pinned.close();
    // A static importer cannot follow moves or take P2P: the buffer goes to RAM at map time and stays.
    const other = gpu.allocate(2 * MiB);
    gpu.cpuWrite(other, 0, pattern(64, 8));
    const s = dmaBufAttach(other, importer) as DmaBufAttachment;
    const sgt = dmaBufMapAttachmentUnlocked(s, DmaDirection.BIDIRECTIONAL) as SgTable;
    expect(gpu.placement(other)).toEqual([false]);
    const got = new Uint8Array(64);
    dmaBufDeviceRead(s, sgt, 0, got);
    expect(got).toEqual(pattern(64, 8));
    dmaBufUnmapAttachmentUnlocked(s, sgt, DmaDirection.BIDIRECTIONAL);
    dmaBufDetach(other, s);
  });
});

describe("VFIO PCI BAR exporter", () => {
  function vfioRig(debug: "throw" | "collect" = "throw") {
    const rig = dmaBufRig({ debug });
    const vdev = new VfioPciCoreDevice(rig.sys, GPU);
    const bar = rig.platform.endpoint(GPU).bars[0];
    if (bar === undefined) throw new Error("no BAR");
    rig.platform.memory.write(bar.phys, pattern(8 * PAGE_SIZE, 4));
    const buf = vdev.featureDmaBuf({ regionIndex: 0, openFlags: 0, flags: 0, dmaRanges: [{ offset: 0, length: 8 * PAGE_SIZE }] }) as DmaBuf;
    return { ...rig, vdev, bar, buf };
  }

  it("validates the request as upstream", () => {
    const { vdev } = vfioRig();
    const req = (dmaRanges: { offset: number; length: number }[], extra: { regionIndex?: number; flags?: number } = {}) =>
      vdev.featureDmaBuf({ regionIndex: extra.regionIndex ?? 0, openFlags: 0, flags: extra.flags ?? 0, dmaRanges });
    expect(req([])).toBe(-DmaBufErrno.EINVAL);
    expect(req([{ offset: 0, length: PAGE_SIZE }], { flags: 1 })).toBe(-DmaBufErrno.EINVAL);
    expect(req([{ offset: 0, length: PAGE_SIZE }], { regionIndex: 6 })).toBe(-DmaBufErrno.ENODEV);
    expect(req([{ offset: 0, length: 0 }])).toBe(-DmaBufErrno.EINVAL);
    expect(req([{ offset: 100, length: PAGE_SIZE }])).toBe(-DmaBufErrno.EINVAL);
    expect(req([{ offset: 0, length: 100 }])).toBe(-DmaBufErrno.EINVAL);
    expect(req([{ offset: 64 * MiB - PAGE_SIZE, length: 2 * PAGE_SIZE }])).toBe(-DmaBufErrno.EINVAL);
    expect(req([{ offset: 0, length: 2 ** 52 }, { offset: 0, length: 2 ** 52 }])).toBe(-DmaBufErrno.EINVAL);
  });

  it("refuses static and non-revocable importers with -EOPNOTSUPP", () => {
    const { buf, importer } = vfioRig();
    expect(dmaBufAttach(buf, importer)).toBe(-DmaBufErrno.EOPNOTSUPP);
    expect(DmaBufImporter.attach(buf, importer, { revocable: false })).toBe(-DmaBufErrno.EOPNOTSUPP);
    expect(DmaBufImporter.attach(buf, importer, { allowPeer2peer: false })).toBe(-DmaBufErrno.EOPNOTSUPP);
    expect(buf.attachments.length).toBe(0);
  });

  it("memory disable revokes: importers unmap, new maps get -ENODEV, enable lets them map again", () => {
    const { buf, importer, vdev, platform, sys } = vfioRig();
    const imp = DmaBufImporter.attach(buf, importer) as DmaBufImporter;
    const phys = DmaBufImporter.attach(buf, importer, { mapping: "phys" }) as DmaBufImporter;
    expect(imp.read(0, 8)).toEqual(pattern(8 * PAGE_SIZE, 4).subarray(0, 8));
    expect(phys.read(0, 8)).toEqual(pattern(8 * PAGE_SIZE, 4).subarray(0, 8));
    expect(vdev.setMemoryEnable(false)).toEqual({ done: true, waitingFor: 0 });
    expect(vdev.memoryEnabled).toBe(false);
    expect(imp.isMapped || phys.isMapped).toBe(false);
    expect(imp.read(0, 8)).toBe(-DmaBufErrno.ENODEV);
    expect(platform.trace.counters.get(Counter.DmaBufRevokes)).toBe(1);
    vdev.setMemoryEnable(true);
    expect(imp.read(0, 8)).toEqual(pattern(8 * PAGE_SIZE, 4).subarray(0, 8));
    imp.close();
    phys.close();
    expect(sys.debug.reports()).toEqual([]);
  });

  it("an importer that never unmaps holds the revoke: the finding, and memory stays enabled until it does", () => {
    const { buf, importer, vdev, sys } = vfioRig("collect");
    const bad = DmaBufImporter.attach(buf, importer, { ignoreInvalidate: true }) as DmaBufImporter;
    expect(bad.ensureMapped()).toBe(0);
    expect(vdev.setMemoryEnable(false)).toEqual({ done: false, waitingFor: 1 });
    expect(sys.debug.count("revoke-never-unmapped")).toBe(1);
    expect(vdev.memoryEnabled).toBe(true);
    bad.unmap();
    expect(vdev.memoryEnabled).toBe(false);
    bad.close();
  });

  it("throws the finding in throw mode", () => {
    const { buf, importer, vdev } = vfioRig();
    const bad = DmaBufImporter.attach(buf, importer, { ignoreInvalidate: true }) as DmaBufImporter;
    bad.ensureMapped();
    expect(() => vdev.setMemoryEnable(false)).toThrow(DmaBufDebugError);
  });

  it("reset revokes and restores; close revokes for good", () => {
    const { buf, importer, vdev } = vfioRig();
    const imp = DmaBufImporter.attach(buf, importer) as DmaBufImporter;
    expect(imp.ensureMapped()).toBe(0);
    expect(vdev.reset().done).toBe(true);
    expect(imp.invalidations).toBe(2); // revoke, then the un-revoke notification
    expect(imp.ensureMapped()).toBe(0);
    expect(vdev.close().done).toBe(true);
    expect(imp.ensureMapped()).toBe(-DmaBufErrno.ENODEV);
    expect(vdev.featureDmaBuf({ regionIndex: 0, openFlags: 0, flags: 0, dmaRanges: [{ offset: 0, length: PAGE_SIZE }] })).toBe(-DmaBufErrno.ENODEV);
    imp.close();
  });
});

describe("VFIO with pinned and closed importers (7.1)", () => {
  it("a pinned, revocable importer is allowed; a revoke is permanent for it; close is final", () => {
    const rig = dmaBufRig();
    const vdev = new VfioPciCoreDevice(rig.sys, GPU);
    const buf = vdev.featureDmaBuf({ regionIndex: 0, openFlags: 0, flags: 0, dmaRanges: [{ offset: 0, length: PAGE_SIZE }] }) as DmaBuf;
    const pinned = DmaBufImporter.attach(buf, rig.importer, { pinned: true }) as DmaBufImporter;
    expect(pinned.ensureMapped()).toBe(0);
    expect(vdev.setMemoryEnable(false).done).toBe(true);
    expect(pinned.revoked).toBe(true);
    vdev.setMemoryEnable(true);
    expect(pinned.ensureMapped()).toBe(-DmaBufErrno.EINVAL); // never maps again
    const dyn = DmaBufImporter.attach(buf, rig.importer) as DmaBufImporter;
    expect(dyn.ensureMapped()).toBe(0);
    vdev.close();
    expect(vdev.setMemoryEnable(true).done).toBe(true);
    expect(dyn.ensureMapped()).toBe(-DmaBufErrno.ENODEV);
    // The invalidation log saw each invalidation quiesce (every importer unmapped in its callback).
    const recs = rig.sys.invalidations.records;
    expect(recs.map((r) => r.reason)).toEqual(["memory-disable", "memory-enable", "close"]);
    expect(recs.every((r) => r.tQuiesced !== undefined)).toBe(true);
    pinned.close();
    dyn.close();
  });
});
