import { describe, expect, it } from "vitest";
import { MiB, PAGE_SIZE } from "@dmasim/memory";
import { DmaBufImporter, GpuVramExporter, VfioPciCoreDevice } from "./index.js";
import type { DmaBuf, TraceEvent } from "./index.js";
import { GPU, dmaBufRig } from "./test-fixtures.js";

const DMABUF_TYPES = new Set(["dmabuf.place", "dmabuf.map", "dmabuf.unmap", "dmabuf.invalidate", "dmabuf.move", "dmabuf.revoke"]);

function record(rig: ReturnType<typeof dmaBufRig>): { seen: TraceEvent[]; off: () => void } {
  const seen: TraceEvent[] = [];
  const off = rig.sys.trace.events.subscribe((e) => {
    if (DMABUF_TYPES.has(e.type)) seen.push(e as TraceEvent);
  });
  return { seen, off };
}

describe("dma-buf trace events", () => {
  it("a GPU move: map, then invalidate, move to RAM with the blocks left in VRAM, the importer's unmap and remap", () => {
    const rig = dmaBufRig();
    const gpu = new GpuVramExporter(rig.sys, { bdf: GPU, blockBytes: 2 * MiB });
    const buf = gpu.allocate(4 * MiB);
    const imp = DmaBufImporter.attach(buf, rig.importer, { mapping: "sgt" }) as DmaBufImporter;
    const { seen, off } = record(rig);
    imp.read(0, 16);
    expect(gpu.migrate(buf, "ram", [1])).toBe(1);
    imp.read(0, 16);
    imp.close();
    off();
    const name = { buf: buf.inode, exporter: buf.expName };
    expect(seen.map((e) => e.type)).toEqual(["dmabuf.map", "dmabuf.unmap", "dmabuf.invalidate", "dmabuf.move", "dmabuf.map", "dmabuf.unmap"]);
    expect(seen[0]).toMatchObject({ ...name, device: rig.importer.bdf, kind: "sgt", size: 4 * MiB });
    expect(seen[2]).toMatchObject({ ...name, reason: "migrate", importers: 1 });
    expect(seen[3]).toMatchObject({ ...name, to: "ram", blocks: 1, bytes: 2 * MiB, inVram: 1, totalBlocks: 2 });
  });

  it("a new GPU buffer reports where its blocks went", () => {
    const rig = dmaBufRig();
    const gpu = new GpuVramExporter(rig.sys, { bdf: GPU, blockBytes: 2 * MiB });
    const { seen, off } = record(rig);
    const vram = gpu.allocate(4 * MiB);
    const ram = gpu.allocate(2 * MiB, "ram");
    off();
    expect(seen).toMatchObject([
      { type: "dmabuf.place", buf: vram.inode, size: 4 * MiB, inVram: 2, totalBlocks: 2 },
      { type: "dmabuf.place", buf: ram.inode, size: 2 * MiB, inVram: 0, totalBlocks: 1 },
    ]);
  });

  it("a vfio-pci revoke and the enable that follows", () => {
    const rig = dmaBufRig();
    const vdev = new VfioPciCoreDevice(rig.sys, GPU);
    const buf = vdev.featureDmaBuf({ regionIndex: 0, openFlags: 0, flags: 0, dmaRanges: [{ offset: 0, length: 8 * PAGE_SIZE }] }) as DmaBuf;
    const imp = DmaBufImporter.attach(buf, rig.importer) as DmaBufImporter;
    imp.read(0, 8);
    const { seen, off } = record(rig);
    vdev.setMemoryEnable(false);
    vdev.setMemoryEnable(true);
    off();
    imp.close();
    const revokes = seen.filter((e) => e.type === "dmabuf.revoke");
    expect(revokes).toMatchObject([
      { buf: buf.inode, revoked: true, reason: "memory-disable", waitingFor: 0 },
      { buf: buf.inode, revoked: false, reason: "memory-enable", waitingFor: 0 },
    ]);
    expect(seen.filter((e) => e.type === "dmabuf.invalidate")).toHaveLength(2);
  });
});
