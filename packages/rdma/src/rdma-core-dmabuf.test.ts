import { DmaBufCounter, dmaBufPut } from "@dmasim/dmabuf";
import type { DmaBuf, GpuPlacement } from "@dmasim/dmabuf";
import { describe, expect, it } from "vitest";
import { IbWcOpcode, IbWcStatus, IbWrOpcode } from "./constants.js";
import { RdmaDmabufCounter } from "./dmabuf-counters.js";
import type { IbMr } from "./mr.js";
import { ACCESS_ALL, cpuRead, cpuWrite, dmabufRig, leftovers, mustMr } from "./test-dmabuf.js";
import type { DmabufRig } from "./test-dmabuf.js";
import { postAndPoll } from "./test-fixtures.js";
import type { UmemDmabufKind, UmemDmabufMapping } from "./umem-dmabuf.js";
import { ibPollCq, ibPostRecv } from "./verbs.js";
import type { IbQp } from "./verbs.js";

// rdma-core tests/test_mr.py (DmabufMRTest) and tests/test_mlx5_dmabuf.py: players with one dma-buf MR
// each (a GPU buffer in VRAM, or in GTT: system RAM), iova = offset as pyverbs' DmaBufMR registers it;
// `u.traffic` (SEND/RECV both ways) and `u.rdma_traffic` (RDMA WRITE both ways), every byte checked.

const MSG = 1024;
const ITERS = 10;
const BUF = 64 * 1024;

interface Player {
  readonly qp: IbQp;
  readonly buf: DmaBuf;
  readonly mr: IbMr;
}

function players(rig: DmabufRig, placement: GpuPlacement, mapping: UmemDmabufMapping, kind: UmemDmabufKind = "dynamic", offset = 0): [Player, Player] {
  const make = (nicSide: "A" | "B"): Player => {
    const buf = rig.gpu.allocate(BUF, placement);
    const nic = nicSide === "A" ? rig.nicA : rig.nicB;
    const pd = nicSide === "A" ? rig.pdA : rig.pdB;
    const mr = mustMr(nic.regDmabufMr(pd, buf, offset, MSG, offset, ACCESS_ALL, { kind, mapping }));
    return { qp: nicSide === "A" ? rig.qpA : rig.qpB, buf, mr };
  };
  return [make("A"), make("B")];
}

function msg(iter: number, who: number): Uint8Array {
  // u.traffic fills the buffer with one character per iteration ('c' for the client, 's' for the server).
  return new Uint8Array(MSG).fill((who === 0 ? 0x63 : 0x73) + iter);
}

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : a.length;
}

/** u.traffic: SEND/RECV from client to server, then back; each receive buffer checked. */
function traffic(rig: DmabufRig, client: Player, server: Player, iters: number, between?: (i: number) => void): void {
  for (let i = 0; i < iters; i++) {
    between?.(i);
    for (const [snd, rcv, who] of [[client, server, 0] as const, [server, client, 1] as const]) {
      cpuWrite(rig, rcv.buf, rcv.mr.addr, new Uint8Array(MSG));
      expect(ibPostRecv(rcv.qp, { wrId: i, sgList: [{ addr: rcv.mr.addr, length: MSG, lkey: rcv.mr.lkey }] })).toBe(0);
      const m = msg(i, who);
      cpuWrite(rig, snd.buf, snd.mr.addr, m);
      const wc = postAndPoll(snd.qp, { wrId: i, opcode: IbWrOpcode.SEND, sgList: [{ addr: snd.mr.addr, length: MSG, lkey: snd.mr.lkey }] });
      expect(wc.status).toBe(IbWcStatus.SUCCESS);
      const cq = rcv.qp.recvCq;
      const [r] = ibPollCq(cq, 1);
      expect(r).toMatchObject({ status: IbWcStatus.SUCCESS, opcode: IbWcOpcode.RECV, byteLen: MSG });
      expect(firstDiff(cpuRead(rig, rcv.buf, rcv.mr.addr, MSG), m)).toBe(-1);
    }
  }
}

/** u.rdma_traffic: RDMA WRITE from client to server's MR (raddr = its offset), then back; checked on arrival. */
function rdmaTraffic(rig: DmabufRig, client: Player, server: Player, iters: number, between?: (i: number) => void): void {
  for (let i = 0; i < iters; i++) {
    between?.(i);
    for (const [snd, rcv, who] of [[client, server, 0] as const, [server, client, 1] as const]) {
      const m = msg(i, who);
      cpuWrite(rig, snd.buf, snd.mr.addr, m);
      const wc = postAndPoll(snd.qp, { wrId: i, opcode: IbWrOpcode.RDMA_WRITE, sgList: [{ addr: snd.mr.addr, length: MSG, lkey: snd.mr.lkey }], remoteAddr: rcv.mr.addr, rkey: rcv.mr.rkey });
      expect(wc.status).toBe(IbWcStatus.SUCCESS);
      expect(firstDiff(cpuRead(rig, rcv.buf, rcv.mr.addr, MSG), m)).toBe(-1);
    }
  }
}

function teardown(rig: DmabufRig, ps: readonly Player[]): void {
  for (const p of ps) {
    expect(p.qp.nic.deregMr(p.mr)).toBe(0);
    dmaBufPut(p.buf);
  }
  rig.gpu.reap();
  expect(leftovers(rig)).toEqual({ buffers: 0, attachments: 0, mappings: 0, mappedA: 0, mappedB: 0 });
  expect(rig.sys.debug.reports()).toEqual([]);
}

describe("rdma-core DmabufMRTest", () => {
  for (const placement of ["vram", "ram"] as const) {
    for (const mapping of ["sgt", "phys"] as const) {
      const name = `${placement === "ram" ? "gtt" : "vram"}, ${mapping}`;
      it(`test_dmabuf_rc_traffic (${name})`, () => {
        const rig = dmabufRig();
        const [client, server] = players(rig, placement, mapping);
        traffic(rig, client, server, ITERS);
        teardown(rig, [client, server]);
      });

      it(`test_dmabuf_rdma_traffic (${name})`, () => {
        const rig = dmabufRig();
        const [client, server] = players(rig, placement, mapping, "dynamic", 4096);
        rdmaTraffic(rig, client, server, ITERS);
        teardown(rig, [client, server]);
      });
    }
  }

  it("test_dmabuf_rdma_traffic over pinned MRs (ib_umem_dmabuf_get_pinned)", () => {
    const rig = dmabufRig();
    const [client, server] = players(rig, "vram", "sgt", "pinned");
    rdmaTraffic(rig, client, server, ITERS);
    teardown(rig, [client, server]);
  });
});

describe("beyond rdma-core: moves and revokes in the middle of traffic", () => {
  for (const mapping of ["sgt", "phys"] as const) {
    it(`${mapping}: the GPU migrates both buffers between VRAM and RAM every other iteration; bytes stay right, one fault per move`, () => {
      const rig = dmabufRig({ copyBytesPerNs: 0.5 });
      const [client, server] = players(rig, "vram", mapping);
      const c = rig.kernel.trace.counters;
      const before = c.snapshot();
      let moves = 0;
      const migrate = (i: number): void => {
        if (i % 2 === 0) return;
        const to = rig.gpu.placement(server.buf)[0] === true ? "ram" : "vram";
        expect(rig.gpu.migrate(server.buf, to)).toBeGreaterThan(0);
        expect(rig.gpu.migrate(client.buf, to)).toBeGreaterThan(0);
        moves++;
      };
      rdmaTraffic(rig, client, server, ITERS, migrate);
      traffic(rig, client, server, ITERS, migrate);
      const d = c.snapshot().diff(before);
      expect(moves).toBe(ITERS); // five per loop, two loops
      // Each move of a buffer is one invalidation and one page fault of its MR (the fault maps the whole MR).
      expect(d.get(RdmaDmabufCounter.DmabufMrInvalidations)).toBe(2 * moves);
      expect(d.get(RdmaDmabufCounter.DmabufMrFaults)).toBe(2 * moves);
      expect(d.get(DmaBufCounter.DmaBufMigrations)).toBe(2 * moves);
      expect(rig.nicA.stats.pageFaultEvents + rig.nicB.stats.pageFaultEvents).toBe(2 * moves);
      teardown(rig, [client, server]);
    });
  }

  it("a revocable MR revoked by its exporter: the WR completes with an access error, the QP flushes the rest", () => {
    const rig = dmabufRig();
    const vbuf = rig.vfio.featureDmaBuf({ regionIndex: 0, openFlags: 0, flags: 0, dmaRanges: [{ offset: 0, length: BUF }] });
    if (typeof vbuf === "number") throw new Error(String(vbuf));
    const server: Player = { qp: rig.qpB, buf: vbuf, mr: mustMr(rig.nicB.regDmabufMr(rig.pdB, vbuf, 0, MSG, 0, ACCESS_ALL, { kind: "revocable" })) };
    const cbuf = rig.heap.allocate(BUF);
    const client: Player = { qp: rig.qpA, buf: cbuf, mr: mustMr(rig.nicA.regDmabufMr(rig.pdA, cbuf, 0, MSG, 0, ACCESS_ALL, { kind: "pinned" })) };
    const wr = { wrId: 1, opcode: IbWrOpcode.RDMA_WRITE, sgList: [{ addr: 0, length: MSG, lkey: client.mr.lkey }], remoteAddr: 0, rkey: server.mr.rkey };
    expect(postAndPoll(rig.qpA, wr).status).toBe(IbWcStatus.SUCCESS);
    expect(rig.vfio.reset().done).toBe(true);
    expect(postAndPoll(rig.qpA, wr).status).toBe(IbWcStatus.REM_ACCESS_ERR);
    expect(postAndPoll(rig.qpA, wr).status).toBe(IbWcStatus.WR_FLUSH_ERR);
    expect(server.mr.dmabuf?.revoked).toBe(true);
    for (const p of [server, client]) {
      expect(p.qp.nic.deregMr(p.mr)).toBe(0);
      dmaBufPut(p.buf);
    }
    expect(leftovers(rig)).toEqual({ buffers: 0, attachments: 0, mappings: 0, mappedA: 0, mappedB: 0 });
  });
});
