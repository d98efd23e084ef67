import { DmaBufCounter, DmaBufSystem, GpuVramExporter, VfioPciCoreDevice, dmaBufPut } from "@dmasim/dmabuf";
import type { DmaBuf } from "@dmasim/dmabuf";
import { physAddr } from "@dmasim/memory";
import type { Platform } from "@dmasim/pcie-p2p";
import { DmasimInputError } from "@dmasim/trace";
import { IbWcStatus, IbWrOpcode, RdmaDmabufCounter, ibConnectQp, ibCreateCq, ibCreateQp, ibPollCq, ibPostRecv, ibPostSend } from "@dmasim/rdma";
import type { IbMr, IbPd, IbSendWr, Mlx5Nic, RegDmabufMrOptions } from "@dmasim/rdma";
import type { Api } from "../types.js";
import { setUp } from "./host.js";
import { check } from "./result.js";
import type { RdmaRun } from "./rdma.js";
import { RW } from "./rdma.js";
import { rdmaPattern } from "./rdma-test-odp.js";

const KiB = 1024;
/** Bytes of each GPU buffer and of the VFIO range; the GPU's migration granule. */
const BUF = 256 * KiB;
const BLOCK = 64 * KiB;

/**
 * The dmabuf MR tests of the rdma-odp workload (@dmasim/rdma's ibv_reg_dmabuf_mr), classic mapping the
 * exporter's sg_table, two-step the physical-range list the NIC's umem maps itself:
 * - dmabuf-rc-traffic, dmabuf-rdma-traffic: rdma-core's test_dmabuf_rc_traffic and test_dmabuf_rdma_traffic
 *   (a GPU buffer in VRAM per side, dynamic MRs with iova = offset; SEND/RECV or RDMA WRITE both ways);
 * - dmabuf-migrate: the GPU moves the responder's buffer between VRAM and RAM every other iteration while
 *   the requester writes and reads it back: each move zaps the MTT, the next access faults, maps again and
 *   waits for the copy's KERNEL fence;
 * - dmabuf-revoke: VFIO exports BAR ranges to a pinned-revocable and a dynamic MR, and a GPU buffer is
 *   registered pinned; memory disable revokes: the revocable MR fails for good, the dynamic one until
 *   memory is enabled again; the GPU refuses to move the pinned buffer.
 */
export function runRdmaDmabuf(r: RdmaRun, platform: Platform, api: Api): void {
  const { s, w, nicA, nicB, pdA, pdB, checks, metrics, mapped } = r;
  const kernel = nicB.kernel;
  const seed = s.seed ?? 1;
  const iters = w.iterations ?? 10;
  const len = w.messageBytes ?? 1024;
  const mapping: RegDmabufMrOptions["mapping"] = api === "classic" ? "sgt" : "phys";
  const name = `scenario "${s.name}"`;
  const gpuBdf = w.exporter;
  if (gpuBdf === undefined) throw setUpError(name, "exporter");
  // The dynamic MR's faults while VFIO has memory disabled are expected, not a failure of the run.
  if (w.test === "dmabuf-revoke") metrics.expectedFaultErrors = 1;
  const sys = new DmaBufSystem(kernel);
  const gpu = setUp(name, () => new GpuVramExporter(sys, { bdf: gpuBdf, blockBytes: BLOCK }));
  mapped.push(`dmabuf MRs (${mapping === "sgt" ? "the exporter's sg_table: dma_buf_map_attachment" : "the physical-range list the umem maps itself: one IOVA, a link per range, unlinked on invalidation with the IOVA kept"}) over buffers of GPU ${gpu.bdf}`);
  const bufs: DmaBuf[] = [];
  const mrs: { nic: Mlx5Nic; mr: IbMr }[] = [];
  const errors: string[] = [];
  const reg = (nic: Mlx5Nic, pd: IbPd, buf: DmaBuf, offset: number, length: number, kind: NonNullable<RegDmabufMrOptions["kind"]>): IbMr | undefined => {
    const mr = nic.regDmabufMr(pd, buf, offset, length, offset, RW, { kind, mapping });
    if (typeof mr === "number") {
      errors.push(`ibv_reg_dmabuf_mr (${kind}) returned ${mr}`);
      return undefined;
    }
    mrs.push({ nic, mr });
    return mr;
  };
  const gpuBuf = (placement: "vram" | "ram", bytes = BUF): DmaBuf => {
    const b = gpu.allocate(bytes, placement);
    bufs.push(b);
    return b;
  };
  const c = kernel.trace.counters;
  const before = c.snapshot();

  if (w.test === "dmabuf-rc-traffic" || w.test === "dmabuf-rdma-traffic") {
    const bufA = gpuBuf("vram");
    const bufB = gpuBuf("vram");
    const mrA = reg(nicA, pdA, bufA, 0, len, "dynamic");
    const mrB = reg(nicB, pdB, bufB, 0, len, "dynamic");
    if (mrA !== undefined && mrB !== undefined) {
      const sides = [
        { nic: nicA, buf: bufA, mr: mrA, qp: r.qpA },
        { nic: nicB, buf: bufB, mr: mrB, qp: r.qpB },
      ] as const;
      for (let i = 0; i < iters; i++) {
        for (const [from, to] of [[0, 1] as const, [1, 0] as const]) {
          const snd = sides[from];
          const rcv = sides[to];
          const data = rdmaPattern(len, seed, 2 * i + from);
          gpu.cpuWrite(snd.buf, 0, data);
          if (w.test === "dmabuf-rc-traffic") {
            gpu.cpuWrite(rcv.buf, 0, new Uint8Array(len));
            ibPostRecv(rcv.qp, { wrId: i, sgList: [{ addr: 0, length: len, lkey: rcv.mr.lkey }] });
            post(snd.qp, { wrId: i, opcode: IbWrOpcode.SEND, sgList: [{ addr: 0, length: len, lkey: snd.mr.lkey }] }, errors);
            const [wc] = ibPollCq(rcv.qp.recvCq, 1);
            if (wc?.status !== IbWcStatus.SUCCESS) errors.push(`recv ${i}: ${wc === undefined ? "no completion" : String(wc.status)}`);
          } else {
            post(snd.qp, { wrId: i, opcode: IbWrOpcode.RDMA_WRITE, sgList: [{ addr: 0, length: len, lkey: snd.mr.lkey }], remoteAddr: 0, rkey: rcv.mr.rkey }, errors);
          }
          r.verify(`iteration ${i}, NIC ${snd.nic.bdf} → NIC ${rcv.nic.bdf}`, gpu.cpuRead(rcv.buf, 0, len), data);
        }
      }
      mapped.push(`rdma-core ${w.test === "dmabuf-rc-traffic" ? "test_dmabuf_rc_traffic (SEND/RECV" : "test_dmabuf_rdma_traffic (RDMA WRITE"} both ways, ${iters} iterations of ${len} bytes)`);
    }
  } else if (w.test === "dmabuf-migrate") {
    const src = gpuBuf("ram");
    // 2 MiB: the copy engine's move (84 µs at 25 bytes/ns) outlasts the invalidation's UMR, so the fault waits.
    const dst = gpuBuf("vram", 8 * BUF);
    const local = reg(nicA, pdA, src, 0, BUF, "pinned");
    const remote = reg(nicB, pdB, dst, 0, 8 * BUF, "dynamic");
    let moves = 0;
    if (local !== undefined && remote !== undefined) {
      for (let i = 0; i < iters; i++) {
        if (i % 2 === 1) {
          const to = gpu.placement(dst)[0] === true ? "ram" : "vram";
          if (gpu.migrate(dst, to) > 0) moves++;
        }
        const at = ((i * 97) % (8 * BUF / len - 1)) * len;
        const data = rdmaPattern(len, seed, i);
        gpu.cpuWrite(src, 0, data);
        post(r.qpA, { wrId: i, opcode: IbWrOpcode.RDMA_WRITE, sgList: [{ addr: 0, length: len, lkey: local.lkey }], remoteAddr: at, rkey: remote.rkey }, errors);
        r.verify(`iteration ${i}: WRITE at ${at}`, gpu.cpuRead(dst, at, len), data);
        post(r.qpA, { wrId: i, opcode: IbWrOpcode.RDMA_READ, sgList: [{ addr: len, length: len, lkey: local.lkey }], remoteAddr: at, rkey: remote.rkey }, errors);
        r.verify(`iteration ${i}: READ at ${at}`, gpu.cpuRead(src, len, len), data);
      }
    }
    const d = c.snapshot().diff(before);
    const faults = d.get(RdmaDmabufCounter.DmabufMrFaults);
    metrics.migrations = moves;
    checks.push(check("one fault per move", moves > 0 && faults === moves && d.get(RdmaDmabufCounter.DmabufMrInvalidations) === moves, `${moves} move(s), ${faults} dmabuf MR fault(s), ${d.get(DmaBufCounter.DmaBufFenceWaits)} KERNEL fence wait(s)`));
    mapped.push(`a dynamic MR over a GPU buffer that moves between VRAM and RAM every other iteration (${iters} iterations of an RDMA WRITE and a READ of ${len} bytes)`);
  } else {
    const vfioBdf = w.vfioDevice;
    if (vfioBdf === undefined) throw setUpError(name, "vfioDevice");
    const vfio = setUp(name, () => new VfioPciCoreDevice(sys, vfioBdf));
    const bar = platform.endpoint(vfioBdf).bars[0];
    const vbuf = (offset: number): DmaBuf | undefined => {
      const b = vfio.featureDmaBuf({ regionIndex: 0, openFlags: 0, flags: 0, dmaRanges: [{ offset, length: BUF }] });
      if (typeof b === "number") {
        errors.push(`VFIO_DEVICE_FEATURE_DMA_BUF returned ${b}`);
        return undefined;
      }
      bufs.push(b);
      return b;
    };
    const src = gpuBuf("ram");
    const local = reg(nicA, pdA, src, 0, BUF, "pinned");
    const vr = vbuf(0);
    const vd = vbuf(BUF);
    const revocable = vr === undefined ? undefined : reg(nicB, pdB, vr, 0, BUF, "revocable");
    const dynamic = vd === undefined ? undefined : reg(nicB, pdB, vd, 0, BUF, "dynamic");
    const pinnedBuf = gpuBuf("vram");
    const pinned = reg(nicB, pdB, pinnedBuf, 0, BUF, "pinned");
    if (local !== undefined && revocable !== undefined && dynamic !== undefined && pinned !== undefined && bar !== undefined) {
      const write = (mr: IbMr, i: number): number => {
        gpu.cpuWrite(src, 0, rdmaPattern(len, seed, i));
        // A fresh QP pair per WR: a failed one leaves its QP in the error state.
        const cqA = ibCreateCq(nicA, 4);
        const qa = ibCreateQp(pdA, { sendCq: cqA, recvCq: cqA });
        const cqB = ibCreateCq(nicB, 4);
        ibConnectQp(qa, ibCreateQp(pdB, { sendCq: cqB, recvCq: cqB }));
        ibPostSend(qa, { wrId: i, opcode: IbWrOpcode.RDMA_WRITE, sgList: [{ addr: 0, length: len, lkey: local.lkey }], remoteAddr: 0, rkey: mr.rkey });
        return ibPollCq(cqA, 1)[0]?.status ?? -1;
      };
      const at = (mr: IbMr): number => bar.phys + (mr === revocable ? 0 : BUF);
      const expectStatus = (what: string, got: number, want: number): void => {
        if (got !== want) errors.push(`${what}: completion status ${got}, expected ${want}`);
      };
      expectStatus("revocable MR before the revoke", write(revocable, 1), IbWcStatus.SUCCESS);
      r.verify("revocable MR before the revoke", kernel.memory.read(physAddr(at(revocable)), len), rdmaPattern(len, seed, 1));
      expectStatus("dynamic MR before the revoke", write(dynamic, 2), IbWcStatus.SUCCESS);
      r.verify("dynamic MR before the revoke", kernel.memory.read(physAddr(at(dynamic)), len), rdmaPattern(len, seed, 2));
      const off = vfio.setMemoryEnable(false);
      expectStatus("revocable MR after the revoke", write(revocable, 3), IbWcStatus.REM_ACCESS_ERR);
      expectStatus("dynamic MR while memory is disabled", write(dynamic, 4), IbWcStatus.REM_ACCESS_ERR);
      const on = vfio.setMemoryEnable(true);
      expectStatus("revocable MR after memory is enabled again", write(revocable, 5), IbWcStatus.REM_ACCESS_ERR);
      expectStatus("dynamic MR after memory is enabled again", write(dynamic, 6), IbWcStatus.SUCCESS);
      r.verify("dynamic MR after memory is enabled again", kernel.memory.read(physAddr(at(dynamic)), len), rdmaPattern(len, seed, 6));
      const refused = gpu.migrate(pinnedBuf, "ram");
      checks.push(check("revoke completed", off.done && on.done && revocable.dmabuf?.revoked === true, `memory disable: ${off.done ? "every importer unmapped" : `${off.waitingFor} mapping(s) held`}; the revocable MR's mkey ${revocable.enabled ? "still enabled" : "disabled for good"}`));
      checks.push(check("a pinned MR's buffer does not move", refused === -16, `the GPU's migration of the pinned buffer returned ${refused}`));
      metrics.revokes = c.snapshot().diff(before).get(RdmaDmabufCounter.DmabufMrRevokes);
      mapped.push("VFIO BAR ranges under a pinned-revocable and a dynamic MR, a pinned MR over GPU VRAM; memory disable and enable");
    }
  }

  const d = c.snapshot().diff(before);
  metrics.dmabufMrFaults = d.get(RdmaDmabufCounter.DmabufMrFaults);
  metrics.dmabufFenceWaits = d.get(DmaBufCounter.DmaBufFenceWaits);
  checks.push(check("every dmabuf MR registered and every WR as expected", errors.length === 0, errors.length === 0 ? `${mrs.length} dmabuf MR(s)` : errors.slice(0, 3).join("; ")));
  // Teardown: deregister, drop the buffers; nothing may stay attached, mapped or in VRAM.
  for (const { nic, mr } of mrs.reverse()) nic.deregMr(mr);
  for (const b of bufs) dmaBufPut(b);
  gpu.reap();
  const leaks = sys.leaks();
  const rules = sys.debug.reports();
  const vram = gpu.nBlocks - gpu.vramFreeBlocks;
  checks.push(
    check(
      "no dma-buf left",
      leaks.buffers === 0 && leaks.attachments === 0 && leaks.mappings === 0 && vram === 0 && rules.length === 0,
      leaks.buffers + leaks.attachments + leaks.mappings + vram + rules.length === 0
        ? "every buffer released, no attachment or mapping left, VRAM free, no dma-buf rule broken"
        : `${leaks.buffers} buffer(s), ${leaks.attachments} attachment(s), ${leaks.mappings} mapping(s), ${vram} VRAM block(s) left; ${rules.map((x) => x.check).join(", ")}`,
    ),
  );
}

function post(qp: Parameters<typeof ibPostSend>[0], wr: IbSendWr, errors: string[]): void {
  const ret = ibPostSend(qp, wr);
  const wc = ret === 0 ? ibPollCq(qp.sendCq, 1)[0] : undefined;
  if (wc?.status !== IbWcStatus.SUCCESS) errors.push(`wr ${wr.wrId}: ${ret !== 0 ? `ib_post_send returned ${ret}` : wc === undefined ? "no completion" : String(wc.status)}`);
}

/** A dmabuf test whose workload lacks a device it needs: the scenario's fault (a ScenarioSetupError). */
function setUpError(name: string, field: string): Error {
  return setUp(name, () => new DmasimInputError("rdma-odp workload", field, undefined, "the BDF of a device for the dmabuf tests"));
}
