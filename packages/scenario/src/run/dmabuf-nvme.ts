import { BLK_STS_DEV_RESOURCE, BLK_STS_OK, ReqOp } from "@dmasim/bio";
import { Counter, DmaBufSystem, GpuVramExporter, VfioPciCoreDevice, dmaBufPut } from "@dmasim/dmabuf";
import type { DmaBuf } from "@dmasim/dmabuf";
import { MiB, physAddr } from "@dmasim/memory";
import { NvmeController, NvmeDmabufToken, NvmeDriver } from "@dmasim/nvme";
import type { NvmeDmabufCompletion } from "@dmasim/nvme";
import { IB_ACCESS_LOCAL_WRITE, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE, IbWcStatus, IbWrOpcode, Mlx5Nic, RdmaDmabufCounter, ibConnectQp, ibCreateCq, ibCreateQp, ibPollCq, ibPostSend } from "@dmasim/rdma";
import type { IbMr, IbPd, IbQp } from "@dmasim/rdma";
import type { DmabufWorkload, Scenario } from "../types.js";
import type { Host, RunContext } from "./context.js";
import { equal, finish, pattern } from "./finish.js";
import type { Outcome } from "./finish.js";
import { createHost, setUp } from "./host.js";
import { mapTypeName } from "./p2p.js";
import { check } from "./result.js";
import type { RunResult } from "./result.js";

const n = (v: number): string => v.toLocaleString("en-US");
/** Bytes per NVMe command: the drive's max_hw_sectors behind iommu-dma (dma_opt_mapping_size). */
const CMD = 128 * 1024;
const NAMESPACE = 64 * MiB;
/** The NIC's MRs: local write, remote read and write (RDMA WRITE into them, READ out of them). */
const NIC_ACCESS = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ;

/** What the flows share: the host, the dma-buf system, the drive and the record of the run. */
interface NvmeRig {
  readonly s: Scenario;
  readonly w: DmabufWorkload;
  readonly host: Host;
  readonly sys: DmaBufSystem;
  readonly controller: NvmeController;
  readonly driver: NvmeDriver;
  readonly mapping: "sgt" | "phys";
  readonly out: Outcome;
  verified: number;
  errors: number;
}

/**
 * An NVMe drive as a dma-buf importer (@dmasim/nvme's NvmeDmabufToken: the nvme-pci side of the 2026
 * dmabuf-token series): classic maps the exporter's sg_table, two-step the physical-range list the drive
 * maps itself. Every run checks the bytes on the namespace and in the buffer after each phase, that no
 * command failed, that the dma-buf rule checker found nothing and that nothing is left mapped.
 */
export function runDmabufNvme(s: Scenario, w: DmabufWorkload, ctx: RunContext): RunResult {
  const host = createHost(s, ctx);
  ctx.onHost?.(`${s.name} ${ctx.api}/${ctx.iommu}`, host);
  const sys = new DmaBufSystem(host.kernel, { debug: "collect" });
  const controller = setUp(`workload.device of scenario "${s.name}"`, () => new NvmeController(host.platform, w.device, { namespaceBytes: NAMESPACE }));
  const driver = new NvmeDriver(host.kernel, controller, { queueDepth: 32 });
  const out: Outcome = { checks: [], mapped: [], metrics: {} };
  const mapping = ctx.api === "classic" ? "sgt" : "phys";
  const rig: NvmeRig = { s, w, host, sys, controller, driver, mapping, out, verified: 0, errors: 0 };
  out.mapped.push(
    mapping === "sgt"
      ? `NVMe ${w.device}: a dma-buf token mapping the exporter's sg_table (dma_buf_map_attachment), PRPs from its per-page DMA addresses`
      : `NVMe ${w.device}: a dma-buf token mapping the physical-range list itself (dmaBufPhysListDmaMap), PRPs from its per-page DMA addresses`,
  );
  const before = host.platform.trace.counters.snapshot();
  const bdfs = [w.device];
  let buffers: DmaBuf[];
  switch (w.flow) {
    case "nvme-revoke":
      buffers = revokeFlow(rig);
      break;
    case "nvme-nic-pressure":
      buffers = nicPressureFlow(rig);
      if (w.nic !== undefined) bdfs.push(w.nic);
      break;
    default:
      buffers = gpuFlow(rig);
  }
  for (const b of buffers) dmaBufPut(b);
  const reports = sys.debug.reports();
  out.checks.push(check("dma-buf rules clean", reports.length === 0, reports.length === 0 ? "no finding of the dma-buf rule checker" : reports.map((r) => `${r.check}: ${r.message}`).slice(0, 3).join("; ")));
  const leaks = sys.leaks();
  const leaked = leaks.buffers + leaks.attachments + leaks.mappings;
  out.checks.push(check("no dma-buf leaked", leaked === 0, leaked === 0 ? "every buffer released, every attachment detached" : `${leaks.buffers} buffer(s), ${leaks.attachments} attachment(s), ${leaks.mappings} mapping(s) still held`));
  out.checks.push(check("every NVMe command succeeded", rig.errors === 0, rig.errors === 0 ? `${n(driver.stats.completed)} command(s) completed with status 0` : `${rig.errors} command(s) completed with an error status`));
  const d = host.platform.trace.counters.snapshot().diff(before);
  out.metrics.verifiedBytes = rig.verified;
  out.metrics.nvmeCommands = driver.stats.completed;
  out.metrics.bytesPeerViaSwitch = d.get(Counter.BytesPeerViaSwitch);
  out.metrics.bytesPeerViaHostBridge = d.get(Counter.BytesPeerViaHostBridge);
  out.metrics.invalidations = d.get(Counter.DmaBufInvalidations);
  out.metrics.migratedBytes = d.get(Counter.DmaBufMigratedBytes);
  out.metrics.fenceWaitNs = d.get(Counter.DmaBufFenceWaitNs);
  out.metrics.revokes = d.get(Counter.DmaBufRevokes);
  return finish(s, ctx, host, bdfs, before, out);
}

function tokenFor(rig: NvmeRig, buf: DmaBuf): NvmeDmabufToken | undefined {
  const t = NvmeDmabufToken.create(rig.driver, buf, { mapping: rig.mapping });
  if (typeof t === "number") {
    rig.out.checks.push(check("drive registered the buffer", false, `nvme_create_dmabuf_token returned ${t}`));
    return undefined;
  }
  return t;
}

/**
 * Queues commands moving [offset, offset + bytes) of the buffer to or from the namespace at `disk`, in
 * CMD pieces; `midway` runs once half of them are queued (a migration, a revoke), with the rest still in
 * flight. Then the controller runs everything and the driver reaps it. Returns the commands refused.
 */
function transfer(rig: NvmeRig, token: NvmeDmabufToken, op: ReqOp, offset: number, disk: number, bytes: number, midway?: () => void): number {
  const { driver, controller } = rig;
  const count = Math.ceil(bytes / CMD);
  let refused = 0;
  const reap = (): void => {
    driver.poll(
      () => undefined,
      (c: NvmeDmabufCompletion) => {
        if (c.nvmeStatus !== 0) rig.errors++;
      },
    );
  };
  for (let i = 0; i < count; i++) {
    if (i === Math.floor(count / 2)) midway?.();
    const len = Math.min(CMD, bytes - i * CMD);
    let st = driver.queueDmabufRq(token, { op, sector: (disk + i * CMD) / 512, offset: offset + i * CMD, len });
    if (st === BLK_STS_DEV_RESOURCE) {
      controller.service(1);
      reap();
      st = driver.queueDmabufRq(token, { op, sector: (disk + i * CMD) / 512, offset: offset + i * CMD, len });
    }
    if (st !== BLK_STS_OK) refused++;
  }
  controller.service(1);
  reap();
  return refused;
}

/** The namespace at `disk` holds `want`, and the check says so. */
function diskHolds(rig: NvmeRig, what: string, disk: number, want: Uint8Array): void {
  const ok = equal(rig.controller.namespace.read(disk, want.length), want);
  if (ok) rig.verified += want.length;
  rig.out.checks.push(check(what, ok, ok ? `${n(want.length)} bytes identical on the namespace` : "the namespace holds other bytes"));
}

/** nvme-p2p and nvme-migrate on a GPU buffer. */
function gpuFlow(rig: NvmeRig): DmaBuf[] {
  const { s, w, host, sys, out, driver } = rig;
  const bytes = w.bytes ?? 4 * MiB;
  const gpu = setUp(`workload.exporter of scenario "${s.name}"`, () => new GpuVramExporter(sys, { bdf: w.exporter, blockBytes: w.blockBytes ?? MiB }));
  const route = mapTypeName(host.platform.pciP2pdmaMapType(gpu.provider, w.device));
  out.mapped.push(`GPU ${w.exporter}: ${n(bytes / MiB)} MiB buffer in VRAM (BAR 0, a p2pdma provider); pci_p2pdma_map_type to the drive → ${route}`);
  if (s.expect?.mapType !== undefined) out.checks.push(check("P2P route", route === s.expect.mapType, `pci_p2pdma_map_type is ${route}, expected ${s.expect.mapType}`));
  const buf = gpu.allocate(bytes);
  const data = pattern(bytes, s.seed ?? 1);
  gpu.cpuWrite(buf, 0, data);
  const token = tokenFor(rig, buf);
  if (token === undefined) return [buf];
  const bufHolds = (what: string, want: Uint8Array): void => {
    const ok = equal(gpu.cpuRead(buf, 0, bytes), want);
    if (ok) rig.verified += bytes;
    out.checks.push(check(what, ok, ok ? `${n(bytes)} bytes identical in the buffer (${gpu.placement(buf).filter((v) => v).length} of ${gpu.placement(buf).length} blocks in VRAM)` : "the buffer holds other bytes"));
  };
  // The drive reads the whole buffer (NVMe writes to the namespace), then writes new data into it.
  transfer(rig, token, ReqOp.WRITE, 0, 0, bytes);
  diskHolds(rig, "drive read the buffer (NVMe write)", 0, data);
  const fresh = pattern(bytes, (s.seed ?? 1) + 1);
  rig.controller.namespace.write(bytes, fresh);
  if (w.flow === "nvme-migrate") {
    // NVMe reads into the buffer with half the commands in flight when the GPU moves it to RAM.
    const drained0 = token.stats.drainedCommands;
    transfer(rig, token, ReqOp.READ, 0, bytes, bytes, () => {
      const moved = gpu.migrate(buf, "ram");
      out.checks.push(check("buffer moved to RAM mid-workload", moved > 0 && gpu.placement(buf).every((v) => !v), `${moved} block(s) moved with ${driver.inFlight} command(s) in flight`));
    });
    out.checks.push(check("in-flight commands finished before the copy", token.stats.drainedCommands > drained0, `${token.stats.drainedCommands - drained0} command(s) the controller finished inside invalidate_mappings`));
    bufHolds("no write lost across the move (the drive's writes are in the RAM copy)", fresh);
    // Back to VRAM with writes from the buffer in flight.
    transfer(rig, token, ReqOp.WRITE, 0, 2 * bytes, bytes, () => gpu.migrate(buf, "vram"));
    diskHolds(rig, "drive read the buffer across the move back to VRAM", 2 * bytes, fresh);
    out.metrics.rebinds = token.stats.maps;
    out.metrics.drainedCommands = token.stats.drainedCommands;
  } else {
    transfer(rig, token, ReqOp.READ, 0, bytes, bytes);
    bufHolds("drive wrote the buffer (NVMe read)", fresh);
  }
  token.release();
  gpu.reap();
  out.checks.push(check("old blocks freed", gpu.vramFreeBlocks === gpu.nBlocks - gpu.placement(buf).filter((v) => v).length, `${gpu.vramFreeBlocks} of ${gpu.nBlocks} VRAM blocks free`));
  return [buf];
}

/** nvme-revoke: VFIO exports a BAR range; memory disable with writes in flight; later commands fail; enable; close. */
function revokeFlow(rig: NvmeRig): DmaBuf[] {
  const { s, w, host, sys, out } = rig;
  const bytes = w.bytes ?? MiB;
  const vdev = setUp(`workload.exporter of scenario "${s.name}"`, () => new VfioPciCoreDevice(sys, w.exporter));
  const buf = exportBar(rig, vdev, w.exporter, bytes);
  if (buf === undefined) return [];
  const token = tokenFor(rig, buf);
  if (token === undefined) return [buf];
  const data = host.platform.memory.read(physAddr(host.platform.endpoint(w.exporter).bars[0]?.phys ?? 0), bytes);
  const revoke = { done: false };
  transfer(rig, token, ReqOp.WRITE, 0, 0, bytes, () => {
    revoke.done = vdev.setMemoryEnable(false).done;
  });
  const done = revoke.done;
  out.checks.push(check("memory disable revoked the buffer with commands in flight", done && !vdev.memoryEnabled, `revoke ${done ? "done" : "pending"}; ${token.stats.drainedCommands} command(s) finished first`));
  // The first half was queued before the revoke: it reached the namespace; the rest was refused.
  const half = Math.floor(Math.ceil(bytes / CMD) / 2) * CMD;
  diskHolds(rig, "commands queued before the revoke completed", 0, data.subarray(0, half));
  const c = host.platform.trace.counters;
  const peer0 = c.get(Counter.BytesPeerViaSwitch) + c.get(Counter.BytesPeerViaHostBridge);
  const refused = transfer(rig, token, ReqOp.READ, 0, 0, CMD);
  const peer = c.get(Counter.BytesPeerViaSwitch) + c.get(Counter.BytesPeerViaHostBridge) - peer0;
  out.checks.push(check("later commands fail, nothing reaches the BAR", refused === 1 && peer === 0, `${refused} command(s) refused (BLK_STS_RESOURCE, map error ${token.stats.lastError}); ${n(peer)} bytes of P2P after the revoke`));
  vdev.setMemoryEnable(true);
  transfer(rig, token, ReqOp.WRITE, 0, 0, bytes);
  diskHolds(rig, "after memory was enabled again the drive reads the BAR", 0, data);
  token.release();
  const closed = vdev.close();
  out.checks.push(check("close revoked for good", closed.done && NvmeDmabufToken.create(rig.driver, buf) === -19, `close ${closed.done ? "done" : "pending"}; registering the buffer again is refused (-ENODEV)`));
  out.metrics.drainedCommands = token.stats.drainedCommands;
  return [buf];
}

function exportBar(rig: NvmeRig, vdev: VfioPciCoreDevice, bdf: string, bytes: number, offset = 0): DmaBuf | undefined {
  const { host, out, s } = rig;
  const bar = host.platform.endpoint(bdf).bars.find((b) => b.index === 0);
  if (bar === undefined || bar.size < offset + bytes) {
    out.checks.push(check("VFIO export", false, `${bdf} has no BAR 0 of at least ${n(offset + bytes)} bytes`));
    return undefined;
  }
  host.platform.memory.write(physAddr(bar.phys + offset), pattern(bytes, (s.seed ?? 1) + 7));
  const buf = vdev.featureDmaBuf({ regionIndex: 0, openFlags: 0, flags: 0, dmaRanges: [{ offset, length: bytes }] });
  if (typeof buf === "number") {
    out.checks.push(check("VFIO export", false, `VFIO_DEVICE_FEATURE_DMA_BUF returned ${buf}`));
    return undefined;
  }
  out.mapped.push(`VFIO ${bdf}: a dma-buf of ${n(bytes / 1024)} KiB of BAR 0${offset === 0 ? "" : ` at ${n(offset / 1024)} KiB`}`);
  return buf;
}

/** The NIC side of nvme-nic-pressure: an mlx5 NIC in loopback (one QP pair on the one NIC) and its MRs. */
interface NicRig {
  readonly nic: Mlx5Nic;
  readonly pd: IbPd;
  readonly qpA: IbQp;
  readonly mrs: IbMr[];
  /** WRs posted, and the completions that were not as expected. */
  wrs: number;
  /** Virtual time from each WR's post to its completion (faults, UMRs and fence waits included). */
  wrNs: number;
  readonly wrErrors: string[];
}

function nicRig(rig: NvmeRig, bdf: string): NicRig {
  const nic = setUp(`workload.nic of scenario "${rig.s.name}"`, () => new Mlx5Nic(rig.host.kernel, bdf));
  const pd = nic.allocPd();
  const cqA = ibCreateCq(nic, 256);
  const cqB = ibCreateCq(nic, 256);
  const qpA = ibCreateQp(pd, { sendCq: cqA, recvCq: cqA });
  ibConnectQp(qpA, ibCreateQp(pd, { sendCq: cqB, recvCq: cqB }));
  return { nic, pd, qpA, mrs: [], wrs: 0, wrNs: 0, wrErrors: [] };
}

/** ibv_reg_dmabuf_mr of [0, bytes) with iova 0; a refusal is a failed check and gives undefined. */
function regMr(rig: NvmeRig, nr: NicRig, buf: DmaBuf, bytes: number, kind: "dynamic" | "pinned" | "revocable"): IbMr | undefined {
  const mr = nr.nic.regDmabufMr(nr.pd, buf, 0, bytes, 0, NIC_ACCESS, { kind, mapping: rig.mapping });
  if (typeof mr === "number") {
    rig.out.checks.push(check(`NIC registered a ${kind} dmabuf MR`, false, `ibv_reg_dmabuf_mr returned ${mr}`));
    return undefined;
  }
  nr.mrs.push(mr);
  return mr;
}

/** One RDMA WRITE or READ on the loopback QP between [localOff, +len) of `local` and [remoteOff, +len) of `remote`: the completion status. */
function rdmaOp(nr: NicRig, opcode: IbWrOpcode, local: IbMr, localOff: number, remote: IbMr, remoteOff: number, len: number): number {
  nr.wrs++;
  const t0 = nr.nic.clock.now;
  const ret = ibPostSend(nr.qpA, { wrId: nr.wrs, opcode, sgList: [{ addr: localOff, length: len, lkey: local.lkey }], remoteAddr: remoteOff, rkey: remote.rkey });
  const st = ret !== 0 ? ret : (ibPollCq(nr.qpA.sendCq, 1)[0]?.status ?? -1);
  nr.wrNs += nr.nic.clock.now - t0;
  return st;
}

/**
 * nvme-nic-pressure: a GPU exports buffer A to the drive and buffer B to an mlx5 NIC, which registers B as
 * a dynamic dmabuf MR and moves it by RDMA WRITE and READ (loopback) from a pinned MR over a buffer in RAM;
 * halfway through the NIC's writes a third allocation puts VRAM under pressure and evicts A and B to RAM
 * while the drive has commands in flight — the NIC's next access faults, maps the RAM copy and waits for
 * the copy's fence; the drive and the NIC keep going on the RAM copies. VFIO exports two BAR ranges, one
 * to the drive and one to the NIC as a pinned-revocable MR, and revokes them mid-workload: the drive's
 * later commands are refused and the NIC's later WRITE completes with a remote access error.
 */
function nicPressureFlow(rig: NvmeRig): DmaBuf[] {
  const { s, w, sys, out } = rig;
  const bytes = w.bytes ?? 4 * MiB;
  const gpu = setUp(`workload.exporter of scenario "${s.name}"`, () => new GpuVramExporter(sys, { bdf: w.exporter, blockBytes: w.blockBytes ?? MiB }));
  if (w.nic === undefined || w.vfio === undefined) {
    out.checks.push(check("workload", false, "nvme-nic-pressure needs workload.nic and workload.vfio"));
    return [];
  }
  const nr = nicRig(rig, w.nic);
  const a = gpu.allocate(bytes);
  const b = gpu.allocate(bytes);
  const src = gpu.allocate(bytes, "ram");
  const bufs = [a, b, src];
  const dataA = pattern(bytes, (s.seed ?? 1) + 2);
  const dataB = pattern(bytes, (s.seed ?? 1) + 3);
  gpu.cpuWrite(a, 0, dataA);
  gpu.cpuWrite(src, 0, dataB);
  const token = tokenFor(rig, a);
  const local = regMr(rig, nr, src, bytes, "pinned");
  const remote = regMr(rig, nr, b, bytes, "dynamic");
  if (token === undefined || local === undefined || remote === undefined) {
    token?.release();
    return teardownNic(nr, gpu, bufs);
  }
  const expectWc = (what: string, got: number, want: number): void => {
    if (got !== want) nr.wrErrors.push(`${what}: completion status ${got}, expected ${want}`);
  };
  const holds = (what: string, got: Uint8Array, want: Uint8Array): void => {
    const ok = equal(got, want);
    if (ok) rig.verified += want.length;
    out.checks.push(check(what, ok, ok ? `${n(want.length)} bytes identical` : "other bytes"));
  };
  const faults0 = nr.nic.counters.get(RdmaDmabufCounter.DmabufMrFaults);
  const revokes0 = nr.nic.counters.get(RdmaDmabufCounter.DmabufMrRevokes);
  // The NIC writes B in eight pieces; VRAM pressure strikes after the fourth, with half the drive's
  // commands in flight: A and B are evicted to make room for C.
  const piece = bytes / 8;
  let c: DmaBuf | undefined;
  const free = gpu.vramFreeBlocks;
  for (let i = 0; i < 8; i++) {
    if (i === 4) {
      transfer(rig, token, ReqOp.WRITE, 0, 0, bytes, () => {
        c = gpu.allocate((gpu.nBlocks - 1) * gpu.blockBytes);
      });
    }
    expectWc(`RDMA WRITE ${i} into B`, rdmaOp(nr, IbWrOpcode.RDMA_WRITE, local, i * piece, remote, i * piece, piece), IbWcStatus.SUCCESS);
  }
  const evicted = gpu.placement(a).every((v) => !v) && gpu.placement(b).every((v) => !v);
  out.checks.push(check("VRAM pressure evicted both buffers", evicted, `a ${n((gpu.nBlocks - 1) * gpu.blockBytes / MiB)} MiB allocation with ${n(free)} block(s) free; drive invalidated ${token.stats.invalidations}×, the NIC's MR mapped ${remote.dmabuf?.maps ?? 0}×`));
  diskHolds(rig, "drive read buffer A across the eviction", 0, dataA);
  holds("NIC's RDMA WRITEs into B landed, half before the eviction and half after (B read in RAM)", gpu.cpuRead(b, 0, bytes), dataB);
  // The NIC reads B, now in RAM, back into the cleared source.
  gpu.cpuWrite(src, 0, new Uint8Array(bytes));
  for (let i = 0; i < 8; i++) expectWc(`RDMA READ ${i} of B`, rdmaOp(nr, IbWrOpcode.RDMA_READ, local, i * piece, remote, i * piece, piece), IbWcStatus.SUCCESS);
  holds("NIC's RDMA READs of B in RAM returned every byte", gpu.cpuRead(src, 0, bytes), dataB);
  const faults = nr.nic.counters.get(RdmaDmabufCounter.DmabufMrFaults) - faults0;
  out.checks.push(check("the eviction cost the NIC's MR one fault", faults === 1, `${faults} dmabuf MR fault(s): the invalidation zapped the MTT, the next WRITE faulted, mapped the RAM copy and waited for the copy's KERNEL fence`));
  // The drive writes A while it is in RAM; it moves back once C is gone.
  const fresh = pattern(bytes, (s.seed ?? 1) + 4);
  rig.controller.namespace.write(bytes, fresh);
  transfer(rig, token, ReqOp.READ, 0, bytes, bytes, () => {
    if (c !== undefined) dmaBufPut(c);
    c = undefined;
    gpu.migrate(a, "vram");
  });
  const okA = equal(gpu.cpuRead(a, 0, bytes), fresh);
  if (okA) rig.verified += bytes;
  out.checks.push(check("no write lost: the drive's writes into A survived its move back to VRAM", okA, okA ? `${n(bytes)} bytes identical` : "buffer A holds other bytes"));
  // VFIO exports BAR 0 [0, 1 MiB) to the drive and [1 MiB, 2 MiB) to the NIC, and revokes both with commands in flight.
  const vdev = setUp(`workload.vfio of scenario "${s.name}"`, () => new VfioPciCoreDevice(sys, w.vfio ?? ""));
  const vbuf = exportBar(rig, vdev, w.vfio, MiB);
  const nbuf = exportBar(rig, vdev, w.vfio, MiB, MiB);
  const bar = rig.host.platform.endpoint(w.vfio).bars.find((x) => x.index === 0);
  if (vbuf !== undefined) bufs.push(vbuf);
  if (nbuf !== undefined) bufs.push(nbuf);
  if (vbuf !== undefined && nbuf !== undefined && bar !== undefined) {
    const vt = tokenFor(rig, vbuf);
    const vmr = regMr(rig, nr, nbuf, MiB, "revocable");
    const barNic = (): Uint8Array => rig.host.kernel.memory.read(physAddr(bar.phys + MiB), MiB);
    if (vt !== undefined && vmr !== undefined) {
      gpu.cpuWrite(src, 0, dataB.subarray(0, MiB));
      expectWc("RDMA WRITE into the VFIO range before the revoke", rdmaOp(nr, IbWrOpcode.RDMA_WRITE, local, 0, vmr, 0, MiB), IbWcStatus.SUCCESS);
      holds("NIC's RDMA WRITE reached the VFIO BAR before the revoke", barNic(), dataB.subarray(0, MiB));
      const revoke = { done: false };
      const refused = transfer(rig, vt, ReqOp.WRITE, 0, 2 * bytes, MiB, () => {
        revoke.done = vdev.setMemoryEnable(false).done;
      });
      const revoked = revoke.done;
      out.checks.push(check("VFIO revoke mid-workload", revoked && refused === Math.ceil(MiB / CMD) - Math.floor(Math.ceil(MiB / CMD) / 2), `revoke ${revoked ? "done" : "pending"}; ${vt.stats.drainedCommands} command(s) finished first, ${refused} refused after`));
      const barBefore = barNic();
      gpu.cpuWrite(src, 0, new Uint8Array(MiB).fill(0xa5));
      const st = rdmaOp(nr, IbWrOpcode.RDMA_WRITE, local, 0, vmr, 0, MiB);
      const untouched = equal(barNic(), barBefore);
      out.checks.push(check("the NIC's revocable MR fails for good after the revoke", st === IbWcStatus.REM_ACCESS_ERR && untouched && vmr.dmabuf?.revoked === true, `RDMA WRITE completion status ${st} (REM_ACCESS_ERR is ${IbWcStatus.REM_ACCESS_ERR}); the BAR ${untouched ? "unchanged" : "CHANGED"}; the mkey ${vmr.enabled ? "still enabled" : "disabled"}`));
    }
    vt?.release();
  }
  out.checks.push(check("every RDMA WR completed as expected", nr.wrErrors.length === 0, nr.wrErrors.length === 0 ? `${nr.wrs} RDMA WR(s) over ${nr.mrs.length} dmabuf MR(s)` : nr.wrErrors.slice(0, 3).join("; ")));
  out.metrics.nicRebinds = remote.dmabuf?.maps ?? 0;
  out.metrics.driveRebinds = token.stats.maps;
  out.metrics.rdmaWrs = nr.wrs;
  out.metrics.nicMrFaults = faults;
  out.metrics.nicMrRevokes = nr.nic.counters.get(RdmaDmabufCounter.DmabufMrRevokes) - revokes0;
  out.metrics.nicWrNs = nr.wrNs;
  token.release();
  const left = teardownNic(nr, gpu, bufs);
  vdev.close();
  return left;
}

/** Deregisters the NIC's MRs and reaps the GPU's freed blocks; returns the buffers to put. */
function teardownNic(nr: NicRig, gpu: GpuVramExporter, bufs: DmaBuf[]): DmaBuf[] {
  for (const mr of nr.mrs.reverse()) nr.nic.deregMr(mr);
  gpu.reap();
  return bufs;
}
