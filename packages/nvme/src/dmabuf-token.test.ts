import { BLK_STS_DEV_RESOURCE, BLK_STS_OK, BLK_STS_RESOURCE } from "@dmasim/bio";
import { Counter, DmaDirection } from "@dmasim/dma";
import { DmaBufErrno, DmaResvUsage, dmaBufExport, dmaBufPut } from "@dmasim/dmabuf";
import { MiB } from "@dmasim/memory";
import type { TraceEvent } from "@dmasim/pcie-p2p";
import { describe, expect, it } from "vitest";
import { NvmeDmabufErrno, NvmeDmabufToken } from "./dmabuf-token.js";
import { NvmeInputError } from "./errors.js";
import { Bdf, ReqOp, bytesOf, dmabufRig, firstDiff, io } from "./test-fixtures.js";
import type { DmabufRig } from "./test-fixtures.js";

const KiB = 1024;

function tokenOf(rig: DmabufRig, buf: Parameters<typeof NvmeDmabufToken.create>[1], mapping: "sgt" | "phys"): NvmeDmabufToken {
  const t = NvmeDmabufToken.create(rig.driver, buf, { mapping });
  if (typeof t === "number") throw new Error(`token: ${t}`);
  return t;
}

describe.each(["sgt", "phys"] as const)("NVMe on a GPU buffer by P2P (%s mapping)", (mapping) => {
  it("through the switch: bus addresses, TLPs turn around in the switch, no IOMMU mapping of the data", () => {
    const rig = dmabufRig();
    const buf = rig.gpu.allocate(4 * MiB);
    const data = bytesOf(128 * KiB, 1);
    rig.gpu.cpuWrite(buf, 64 * KiB, data);
    const token = tokenOf(rig, buf, mapping);
    const c = rig.platform.trace.counters;
    const before = c.snapshot();
    // The drive reads the buffer (an NVMe write) at an offset, then writes it back elsewhere (an NVMe read).
    const w = io(rig, token, ReqOp.WRITE, 0, 64 * KiB, 128 * KiB);
    expect(w.queued).toBe(BLK_STS_OK);
    expect(w.done?.nvmeStatus).toBe(0);
    expect(firstDiff(rig.controller.namespace.read(0, 128 * KiB), data)).toBe(-1);
    const r = io(rig, token, ReqOp.READ, 0, 2 * MiB + 512, 128 * KiB);
    expect(r.done?.status).toBe(BLK_STS_OK);
    expect(firstDiff(rig.gpu.cpuRead(buf, 2 * MiB + 512, 128 * KiB), data)).toBe(-1);
    const d = c.snapshot().diff(before);
    expect(d.get(Counter.BytesPeerViaSwitch)).toBe(256 * KiB);
    expect(d.get(Counter.BytesPeerViaHostBridge)).toBe(0);
    // The drive was handed the VRAM's bus addresses (bus offset 0 here: the physical address of the BAR).
    expect(token.currentMap?.dmaList[16]).toBe((rig.gpu.currentList(buf).phys[0] ?? 0) + 64 * KiB);
    expect(token.stats.maps).toBe(1);
    expect(token.release()).toBe(0);
    dmaBufPut(buf);
    expect(rig.sys.leaks()).toEqual({ buffers: 0, attachments: 0, mappings: 0 });
  });

  it("through the host bridge: one IOVA mapped as MMIO, TLPs cross the root complex, unmapped at release", () => {
    const rig = dmabufRig();
    const buf = rig.farGpu.allocate(2 * MiB);
    const data = bytesOf(128 * KiB, 2);
    rig.farGpu.cpuWrite(buf, 0, data);
    const token = tokenOf(rig, buf, mapping);
    const c = rig.platform.trace.counters;
    const before = c.snapshot();
    expect(io(rig, token, ReqOp.WRITE, 8, 0, 128 * KiB).done?.nvmeStatus).toBe(0);
    expect(io(rig, token, ReqOp.READ, 8, 1 * MiB, 128 * KiB).done?.nvmeStatus).toBe(0);
    expect(firstDiff(rig.farGpu.cpuRead(buf, 1 * MiB, 128 * KiB), data)).toBe(-1);
    const d = c.snapshot().diff(before);
    expect(d.get(Counter.BytesPeerViaHostBridge)).toBe(256 * KiB);
    expect(d.get(Counter.BytesPeerViaSwitch)).toBe(0);
    expect(d.get(Counter.PteWrites)).toBeGreaterThan(0);
    const live = rig.kernel.iovaTracker.liveCount(Bdf.NVME);
    token.release();
    expect(rig.kernel.iovaTracker.liveCount(Bdf.NVME)).toBeLessThan(live);
    dmaBufPut(buf);
    expect(rig.sys.leaks()).toEqual({ buffers: 0, attachments: 0, mappings: 0 });
  });

  it("a migration mid-workload: in-flight commands finish on the old VRAM before the copy, later ones map the RAM copy", () => {
    const rig = dmabufRig();
    const buf = rig.gpu.allocate(4 * MiB);
    const token = tokenOf(rig, buf, mapping);
    const disk = bytesOf(1 * MiB, 3);
    rig.controller.namespace.write(0, disk);
    const free0 = rig.gpu.vramFreeBlocks;
    // Eight NVMe reads into the buffer are queued; none has run yet.
    for (let i = 0; i < 8; i++) expect(rig.driver.queueDmabufRq(token, { op: ReqOp.READ, sector: (i * 128 * KiB) / 512, offset: i * 128 * KiB, len: 128 * KiB })).toBe(BLK_STS_OK);
    expect(rig.gpu.migrate(buf, "ram")).toBe(4);
    const copied = buf.resv.signaledAt(DmaResvUsage.KERNEL);
    expect(copied).toBeGreaterThan(rig.platform.trace.clock.now);
    expect(token.stats.invalidations).toBe(1);
    expect(token.stats.drainedCommands).toBe(8);
    expect(token.currentMap).toBeUndefined();
    const done: number[] = [];
    rig.driver.poll(() => undefined, (c) => done.push(c.nvmeStatus));
    expect(done).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    // No write lost: what the drive wrote into VRAM was copied to RAM.
    expect(firstDiff(rig.gpu.cpuRead(buf, 0, 1 * MiB), disk)).toBe(-1);
    rig.gpu.reap();
    expect(rig.gpu.vramFreeBlocks).toBe(free0 + 4);
    // The next command maps the RAM copy (after the copy's fence) and reaches host memory.
    const c = rig.platform.trace.counters;
    const before = c.snapshot();
    expect(io(rig, token, ReqOp.WRITE, 4096, 512 * KiB, 64 * KiB).done?.nvmeStatus).toBe(0);
    expect(firstDiff(rig.controller.namespace.read(4096 * 512, 64 * KiB), disk.subarray(512 * KiB, 576 * KiB))).toBe(-1);
    expect(token.stats.maps).toBe(2);
    expect(rig.platform.trace.clock.now).toBeGreaterThanOrEqual(copied); // mapped after the copy's fence
    const d = c.snapshot().diff(before);
    expect(d.get(Counter.BytesPeerViaSwitch)).toBe(0);
    expect(d.get(Counter.BytesToMemory)).toBeGreaterThanOrEqual(64 * KiB);
    token.release();
    dmaBufPut(buf);
    expect(rig.sys.leaks()).toEqual({ buffers: 0, attachments: 0, mappings: 0 });
  });

  it("VRAM pressure evicts the buffer under the drive: bytes kept, the drive follows", () => {
    const rig = dmabufRig();
    const a = rig.gpu.allocate(12 * MiB);
    const data = bytesOf(12 * MiB, 4);
    rig.gpu.cpuWrite(a, 0, data);
    const token = tokenOf(rig, a, mapping);
    expect(rig.driver.queueDmabufRq(token, { op: ReqOp.WRITE, sector: 0, offset: 0, len: 128 * KiB })).toBe(BLK_STS_OK);
    const b = rig.gpu.allocate(8 * MiB); // 16 MiB of VRAM: a goes to RAM
    expect(rig.gpu.placement(a).every((v) => !v)).toBe(true);
    expect(token.stats.drainedCommands).toBe(1);
    rig.driver.poll(() => undefined);
    expect(firstDiff(rig.controller.namespace.read(0, 128 * KiB), data.subarray(0, 128 * KiB))).toBe(-1);
    expect(io(rig, token, ReqOp.WRITE, 1024, 11 * MiB, 128 * KiB).done?.nvmeStatus).toBe(0);
    expect(firstDiff(rig.controller.namespace.read(1024 * 512, 128 * KiB), data.subarray(11 * MiB, 11 * MiB + 128 * KiB))).toBe(-1);
    token.release();
    dmaBufPut(a);
    dmaBufPut(b);
    expect(rig.sys.leaks()).toEqual({ buffers: 0, attachments: 0, mappings: 0 });
  });

  it("a VFIO revoke mid-workload: in-flight commands finish, later ones fail, nothing touches the BAR after", () => {
    const rig = dmabufRig();
    const bar = rig.platform.endpoint(Bdf.VFIO).bars[0];
    if (bar === undefined) throw new Error("no BAR");
    const data = bytesOf(1 * MiB, 5);
    rig.platform.memory.write(bar.phys, data);
    const buf = rig.vfio.featureDmaBuf({ regionIndex: 0, openFlags: 0, flags: 0, dmaRanges: [{ offset: 0, length: 1 * MiB }] });
    if (typeof buf === "number") throw new Error(`export: ${buf}`);
    const token = tokenOf(rig, buf, mapping);
    for (let i = 0; i < 8; i++) expect(rig.driver.queueDmabufRq(token, { op: ReqOp.WRITE, sector: i * 256, offset: i * 128 * KiB, len: 128 * KiB })).toBe(BLK_STS_OK);
    const r = rig.vfio.setMemoryEnable(false);
    expect(r).toEqual({ done: true, waitingFor: 0 });
    expect(rig.vfio.memoryEnabled).toBe(false);
    expect(token.stats.drainedCommands).toBe(8);
    const statuses: number[] = [];
    rig.driver.poll(() => undefined, (c) => statuses.push(c.nvmeStatus));
    expect(statuses).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(firstDiff(rig.controller.namespace.read(0, 1 * MiB), data)).toBe(-1);
    // After the revoke: the map is refused (-ENODEV), the request ends with BLK_STS_RESOURCE, no TLP reaches the BAR.
    const hits: number[] = [];
    const off = rig.platform.trace.events.subscribe((e: TraceEvent) => {
      if (e.type === "tlp" && e.addr >= bar.bus && e.addr < bar.bus + bar.size) hits.push(e.addr);
    });
    const inFlight = rig.driver.inFlight;
    expect(rig.driver.queueDmabufRq(token, { op: ReqOp.READ, sector: 0, offset: 0, len: 4096 })).toBe(BLK_STS_RESOURCE);
    expect(token.stats.lastError).toBe(-DmaBufErrno.ENODEV);
    expect(rig.driver.inFlight).toBe(inFlight);
    rig.controller.service(1);
    off();
    expect(hits).toEqual([]);
    // Memory enabled again: the drive maps and reads the BAR again.
    rig.vfio.setMemoryEnable(true);
    expect(io(rig, token, ReqOp.WRITE, 4096, 0, 4096).done?.nvmeStatus).toBe(0);
    token.release();
    expect(rig.vfio.close().done).toBe(true);
    dmaBufPut(buf);
    expect(rig.sys.leaks()).toEqual({ buffers: 0, attachments: 0, mappings: 0 });
  });
});

describe("NVMe dma-buf tokens: refusals and bad input", () => {
  it("a buffer whose size is not a whole number of controller pages is refused with -EINVAL", () => {
    const rig = dmabufRig();
    const buf = dmaBufExport(rig.sys, { expName: "odd", size: 6000, priv: {}, ops: { mapDmaBuf: () => -DmaBufErrno.ENOMEM, unmapDmaBuf: () => undefined, release: () => undefined } });
    if (typeof buf === "number") throw new Error(`export: ${buf}`);
    expect(NvmeDmabufToken.create(rig.driver, buf)).toBe(-NvmeDmabufErrno.EINVAL);
    expect(buf.attachments).toHaveLength(0);
    dmaBufPut(buf);
  });

  it("a closed VFIO device's buffer cannot be registered (-ENODEV)", () => {
    const rig = dmabufRig();
    const buf = rig.vfio.featureDmaBuf({ regionIndex: 0, openFlags: 0, flags: 0, dmaRanges: [{ offset: 0, length: 64 * KiB }] });
    if (typeof buf === "number") throw new Error(`export: ${buf}`);
    rig.vfio.close();
    expect(NvmeDmabufToken.create(rig.driver, buf)).toBe(-DmaBufErrno.ENODEV);
    dmaBufPut(buf);
  });

  it("bad arguments throw NvmeInputError and change nothing", () => {
    const rig = dmabufRig();
    const buf = rig.gpu.allocate(1 * MiB);
    expect(() => NvmeDmabufToken.create({} as never, buf)).toThrow(NvmeInputError);
    expect(() => NvmeDmabufToken.create(rig.driver, {} as never)).toThrow(NvmeInputError);
    expect(() => NvmeDmabufToken.create(rig.driver, buf, { mapping: "pages" as never })).toThrow(NvmeInputError);
    expect(() => NvmeDmabufToken.create(rig.driver, buf, { dir: DmaDirection.NONE })).toThrow(NvmeInputError);
    expect(buf.attachments).toHaveLength(0);
    const token = tokenOf(rig, buf, "sgt");
    const other = dmabufRig();
    const foreign = NvmeDmabufToken.create(other.driver, other.gpu.allocate(1 * MiB));
    const before = rig.platform.trace.counters.snapshot();
    const stats = { ...rig.driver.stats };
    const bad = [
      { op: 7, sector: 0, offset: 0, len: 4096 },
      { op: ReqOp.READ, sector: -1, offset: 0, len: 4096 },
      { op: ReqOp.READ, sector: 0, offset: 0, len: 100 },
      { op: ReqOp.READ, sector: 0, offset: 0, len: 256 * KiB },
      { op: ReqOp.READ, sector: 0, offset: 2, len: 4096 },
      { op: ReqOp.READ, sector: 0, offset: 1 * MiB - 2048, len: 4096 },
    ];
    for (const rq of bad) expect(() => rig.driver.queueDmabufRq(token, rq as never)).toThrow(NvmeInputError);
    expect(() => rig.driver.queueDmabufRq(foreign as never, { op: ReqOp.READ, sector: 0, offset: 0, len: 4096 })).toThrow(NvmeInputError);
    expect(rig.driver.stats).toEqual(stats);
    expect(rig.driver.inFlight).toBe(0);
    expect(token.stats.maps).toBe(0);
    expect(rig.platform.trace.counters.snapshot().diff(before).get(Counter.PteWrites)).toBe(0);
    const toDevice = NvmeDmabufToken.create(rig.driver, buf, { dir: DmaDirection.TO_DEVICE });
    if (typeof toDevice === "number") throw new Error(`token: ${toDevice}`);
    expect(() => rig.driver.queueDmabufRq(toDevice, { op: ReqOp.READ, sector: 0, offset: 0, len: 4096 })).toThrow(NvmeInputError);
    expect(rig.driver.inFlight).toBe(0);
    toDevice.release();
    token.release();
    expect(() => rig.driver.queueDmabufRq(token, { op: ReqOp.READ, sector: 0, offset: 0, len: 4096 })).toThrow(NvmeInputError);
  });

  it("6.19 semantics: without MOVE_NOTIFY the drive's map pins the buffer, so the GPU cannot move it (-EBUSY) and VFIO refuses the pin", () => {
    const rig = dmabufRig({ version: "6.19" });
    const buf = rig.gpu.allocate(1 * MiB);
    const token = tokenOf(rig, buf, "sgt");
    expect(io(rig, token, ReqOp.WRITE, 0, 0, 4096).done?.nvmeStatus).toBe(0);
    expect(rig.gpu.migrate(buf, "ram")).toBe(-DmaBufErrno.EBUSY);
    expect(token.stats.invalidations).toBe(0);
    token.release();
    const vbuf = rig.vfio.featureDmaBuf({ regionIndex: 0, openFlags: 0, flags: 0, dmaRanges: [{ offset: 0, length: 64 * KiB }] });
    if (typeof vbuf === "number") throw new Error(`export: ${vbuf}`);
    const vtok = tokenOf(rig, vbuf, "sgt");
    expect(rig.driver.queueDmabufRq(vtok, { op: ReqOp.WRITE, sector: 0, offset: 0, len: 4096 })).toBe(BLK_STS_RESOURCE);
    expect(vtok.stats.lastError).toBe(-DmaBufErrno.EOPNOTSUPP);
    vtok.release();
    dmaBufPut(buf);
    dmaBufPut(vbuf);
    expect(rig.sys.leaks()).toEqual({ buffers: 0, attachments: 0, mappings: 0 });
  });

  it("every tag busy: BLK_STS_DEV_RESOURCE, no mapping reference taken", () => {
    const rig = dmabufRig({ queueDepth: 2 });
    const buf = rig.gpu.allocate(1 * MiB);
    const token = tokenOf(rig, buf, "phys");
    for (let i = 0; i < 2; i++) expect(rig.driver.queueDmabufRq(token, { op: ReqOp.WRITE, sector: 8 * i, offset: 4096 * i, len: 4096 })).toBe(BLK_STS_OK);
    expect(rig.driver.queueDmabufRq(token, { op: ReqOp.WRITE, sector: 16, offset: 0, len: 4096 })).toBe(BLK_STS_DEV_RESOURCE);
    expect(token.currentMap?.refs).toBe(2);
    rig.controller.service(1);
    rig.driver.poll(() => undefined);
    expect(token.currentMap?.refs).toBe(0);
    token.release();
  });
});
