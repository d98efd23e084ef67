import { IbWcOpcode, IbWcStatus, IbWrOpcode, RdmaErrno } from "./constants.js";
import { RdmaCounter } from "./counters.js";
import { RdmaInputError } from "./errors.js";
import type { IbMr, IbPd } from "./mr.js";
import { NicAccess, NicAccessResult } from "./nic.js";
import type { Mlx5Nic } from "./nic.js";
import { kCqEntries, kNextQpn, kRecvQueue, kWqeBuffer } from "./internal.js";

/** struct ib_sge: `length` bytes at `addr` of the MR whose lkey is `lkey`. */
export interface IbSge {
  /** User address of the first byte. */
  readonly addr: number;
  /** Bytes. */
  readonly length: number;
  /** Local key of the MR the bytes belong to. */
  readonly lkey: number;
}

/** struct ib_send_wr (with the rdma and atomic parts flattened). */
export interface IbSendWr {
  /** The caller's id, returned in the completion. */
  readonly wrId: number;
  /** The operation: SEND, RDMA WRITE or READ, or an atomic. */
  readonly opcode: IbWrOpcode;
  /** Local buffers the operation reads from (or, for READ and atomics, writes the result into). */
  readonly sgList: readonly IbSge[];
  /** RDMA and atomic: the remote address and key. */
  readonly remoteAddr?: number;
  /** Remote key of the peer's MR (RDMA and atomics). */
  readonly rkey?: number;
  /** Atomics: the compare value (CMP_AND_SWP) or the addend (FETCH_AND_ADD). */
  readonly compareAdd?: bigint;
  /** CMP_AND_SWP: the value swapped in when the compare matches. */
  readonly swap?: bigint;
}

/** struct ib_recv_wr. */
export interface IbRecvWr {
  /** The caller's id, returned in the completion. */
  readonly wrId: number;
  /** Local buffers an incoming SEND is written into, in order. */
  readonly sgList: readonly IbSge[];
}

/** struct ib_wc. */
export interface IbWc {
  /** The id of the work request that completed. */
  readonly wrId: number;
  /** SUCCESS or why the work request failed (an access error after a failed page fault, say). */
  readonly status: IbWcStatus;
  /** What completed (SEND, RDMA WRITE or READ, an atomic, or RECV). */
  readonly opcode: IbWcOpcode;
  /** Bytes transferred (for RECV: bytes received). */
  readonly byteLen: number;
  /** Number of the QP the work request was posted on. */
  readonly qpNum: number;
}

/** struct ib_cq: completions in order, polled by ibPollCq. */
export class IbCq {
  /** The NIC the CQ belongs to. */
  readonly nic: Mlx5Nic;
  /** Completions the CQ holds before it overruns. */
  readonly cqe: number;
  /** Package-private (keyed by a symbol `.` does not export): the completions not polled yet. */
  readonly [kCqEntries]: IbWc[] = [];
  /** Completions dropped because the CQ was full (a CQ overrun: an error on real hardware). */
  overruns = 0;
  /** Made by `ibCreateCq` (`.` exports the class as a type only). */
  constructor(nic: Mlx5Nic, cqe: number) {
    this.nic = nic;
    this.cqe = cqe;
  }
}

/** ib_qp_state, the ones the model uses. */
export const IbQpState = { RESET: 0, RTS: 3, ERR: 6 } as const;
export type IbQpState = (typeof IbQpState)[keyof typeof IbQpState];

/** struct ib_qp of type RC: connected to one peer QP (on another NIC, or the same one: loopback). */
export class IbQp {
  /** The NIC the QP belongs to. */
  readonly nic: Mlx5Nic;
  /** The protection domain: the QP reaches only MRs of this PD. */
  readonly pd: IbPd;
  /** The QP number, unique on its NIC. */
  readonly qpNum: number;
  /** Where send work requests complete. */
  readonly sendCq: IbCq;
  /** Where receive work requests complete. */
  readonly recvCq: IbCq;
  /** RESET until connected, RTS once connected, ERR after a fatal completion error. */
  state: IbQpState = IbQpState.RESET;
  /** The connected peer QP (undefined until ibConnectQp). */
  remote: IbQp | undefined = undefined;
  /** Package-private (keyed by a symbol `.` does not export): posted receive WRs, oldest first. */
  readonly [kRecvQueue]: IbRecvWr[] = [];
  /** Made by `ibCreateQp` (`.` exports the class as a type only). */
  constructor(nic: Mlx5Nic, pd: IbPd, sendCq: IbCq, recvCq: IbCq) {
    this.nic = nic;
    this.pd = pd;
    this.qpNum = nic[kNextQpn]++;
    this.sendCq = sendCq;
    this.recvCq = recvCq;
  }
}

/** ib_create_cq with room for `cqe` completions. */
export function ibCreateCq(nic: Mlx5Nic, cqe: number): IbCq {
  if (!Number.isSafeInteger(cqe) || cqe < 1) throw new RdmaInputError("ib_create_cq", "cqe", cqe, "a positive number of entries");
  return new IbCq(nic, cqe);
}

/** ib_create_qp (IB_QPT_RC) in the RESET state. */
export function ibCreateQp(pd: IbPd, init: { sendCq: IbCq; recvCq: IbCq }): IbQp {
  const nic = init.sendCq.nic;
  if (pd.nic !== nic || init.recvCq.nic !== nic) throw new RdmaInputError("ib_create_qp", "pd", pd.handle, "a PD and CQs of one NIC");
  return new IbQp(nic, pd, init.sendCq, init.recvCq);
}

/** ib_modify_qp through INIT, RTR and RTS of both ends: `a` and `b` become connected (RC). */
export function ibConnectQp(a: IbQp, b: IbQp): void {
  if (a.remote !== undefined || b.remote !== undefined) throw new RdmaInputError("ib_modify_qp", "qp", a.qpNum, "QPs not connected yet");
  a.remote = b;
  b.remote = a;
  a.state = IbQpState.RTS;
  b.state = IbQpState.RTS;
}

/** ib_poll_cq: up to `n` completions, oldest first. */
export function ibPollCq(cq: IbCq, n: number): IbWc[] {
  if (!Number.isSafeInteger(n) || n < 1) throw new RdmaInputError("ib_poll_cq", "num_entries", n, "a positive count");
  const e = cq[kCqEntries];
  const only = e[0];
  // One completion waiting (a poll per WR): a literal array instead of splice's generic copy.
  if (e.length === 1 && only !== undefined) {
    e.pop();
    return [only];
  }
  return e.splice(0, n);
}

function complete(cq: IbCq, wc: IbWc): void {
  const c = cq.nic.counters;
  c.add(RdmaCounter.RdmaCqes);
  if (wc.status !== IbWcStatus.SUCCESS) c.add(RdmaCounter.RdmaCqeErrors);
  if (cq[kCqEntries].length >= cq.cqe) {
    cq.overruns++;
    return;
  }
  cq[kCqEntries].push(wc);
}

function checkSgList(fn: string, sgList: unknown): void {
  if (!Array.isArray(sgList)) throw new RdmaInputError(fn, "wr.sgList", sgList, "an array of { addr, length, lkey }");
  const list = sgList as IbSge[];
  for (let i = 0; i < list.length; i++) {
    const s = list[i];
    if (s === undefined || typeof s !== "object" || !Number.isSafeInteger(s.addr) || s.addr < 0 || !Number.isSafeInteger(s.length) || s.length < 0 || !Number.isSafeInteger(s.addr + s.length) || !Number.isInteger(s.lkey)) {
      throw new RdmaInputError(fn, `wr.sgList[${i}]`, s, "{ addr: a safe integer >= 0, length >= 0, lkey: an integer } with addr + length a safe integer");
    }
  }
}

/** An IbWrOpcode (the test of every post: a few compares rather than a search of the enum's values). */
function isWrOpcode(op: unknown): boolean {
  return op === IbWrOpcode.RDMA_WRITE || op === IbWrOpcode.RDMA_READ || op === IbWrOpcode.SEND || op === IbWrOpcode.ATOMIC_CMP_AND_SWP || op === IbWrOpcode.ATOMIC_FETCH_AND_ADD;
}

/**
 * ib_post_send: the WR runs at once (the model has no doorbell latency): the requester's NIC gathers or
 * scatters its local SGEs, the responder's NIC does the remote part, each through its MTTs and the
 * fabric, ODP faults included; one completion on the send CQ. A QP in the error state flushes the WR
 * (IB_WC_WR_FLUSH_ERR). Returns 0, or -EINVAL (QP not connected; an atomic whose SGE is not 8 bytes).
 * Throws RdmaInputError for an unknown opcode or malformed SGEs.
 */
export function ibPostSend(qp: IbQp, wr: IbSendWr): number {
  const fn = "ib_post_send";
  if (!isWrOpcode(wr.opcode)) throw new RdmaInputError(fn, "wr.opcode", wr.opcode, "an IbWrOpcode (RDMA_WRITE, SEND, RDMA_READ, ATOMIC_CMP_AND_SWP, ATOMIC_FETCH_AND_ADD)");
  checkSgList(fn, wr.sgList);
  const rdma = wr.opcode !== IbWrOpcode.SEND;
  if (rdma && (!Number.isSafeInteger(wr.remoteAddr) || (wr.remoteAddr ?? -1) < 0 || !Number.isInteger(wr.rkey))) {
    throw new RdmaInputError(fn, "wr.remoteAddr", wr.remoteAddr, "with an RDMA or atomic opcode: a remote address (safe integer >= 0) and an rkey");
  }
  const atomic = wr.opcode === IbWrOpcode.ATOMIC_CMP_AND_SWP || wr.opcode === IbWrOpcode.ATOMIC_FETCH_AND_ADD;
  if (atomic && (typeof wr.compareAdd !== "bigint" || (wr.opcode === IbWrOpcode.ATOMIC_CMP_AND_SWP && typeof wr.swap !== "bigint"))) {
    throw new RdmaInputError(fn, "wr.compareAdd", wr.compareAdd, "a bigint (and wr.swap for CMP_AND_SWP)");
  }
  if (qp.state === IbQpState.RESET || qp.remote === undefined) return -RdmaErrno.EINVAL;
  if (atomic && (wr.sgList.length !== 1 || wr.sgList[0]?.length !== 8)) return -RdmaErrno.EINVAL;
  const nic = qp.nic;
  nic.counters.add(RdmaCounter.RdmaWqes);
  const opcode = WC_OPCODE[wr.opcode] ?? IbWcOpcode.SEND;
  if (qp.state === IbQpState.ERR) {
    complete(qp.sendCq, { wrId: wr.wrId, status: IbWcStatus.WR_FLUSH_ERR, opcode, byteLen: 0, qpNum: qp.qpNum });
    return 0;
  }
  const status = execute(qp, qp.remote, wr);
  if (status !== IbWcStatus.SUCCESS) qp.state = IbQpState.ERR;
  // A completed WR moved all its bytes (an atomic's one SGE is its 8); a failed one reports none.
  complete(qp.sendCq, { wrId: wr.wrId, status, opcode, byteLen: status === IbWcStatus.SUCCESS ? totalLength(wr.sgList) : 0, qpNum: qp.qpNum });
  return 0;
}

/** ib_post_recv: queues a receive WR (consumed by the peer's next SEND); a QP in error flushes it. */
export function ibPostRecv(qp: IbQp, wr: IbRecvWr): number {
  checkSgList("ib_post_recv", wr.sgList);
  if (qp.state === IbQpState.RESET) return -RdmaErrno.EINVAL;
  if (qp.state === IbQpState.ERR) {
    complete(qp.recvCq, { wrId: wr.wrId, status: IbWcStatus.WR_FLUSH_ERR, opcode: IbWcOpcode.RECV, byteLen: 0, qpNum: qp.qpNum });
    return 0;
  }
  qp[kRecvQueue].push({ wrId: wr.wrId, sgList: wr.sgList.map((s) => ({ ...s })) });
  return 0;
}

const WC_OPCODE: Partial<Record<number, IbWcOpcode>> = {
  [IbWrOpcode.RDMA_WRITE]: IbWcOpcode.RDMA_WRITE,
  [IbWrOpcode.SEND]: IbWcOpcode.SEND,
  [IbWrOpcode.RDMA_READ]: IbWcOpcode.RDMA_READ,
  [IbWrOpcode.ATOMIC_CMP_AND_SWP]: IbWcOpcode.COMP_SWAP,
  [IbWrOpcode.ATOMIC_FETCH_AND_ADD]: IbWcOpcode.FETCH_ADD,
};

function totalLength(sgList: readonly IbSge[]): number {
  let n = 0;
  for (const s of sgList) n += s.length;
  return n;
}

/** Moves `buf` to (or from) the local SGEs of `qp` on its NIC: the local part of a WR. */
function localSg(qp: IbQp, sgList: readonly IbSge[], buf: Uint8Array, write: boolean): NicAccessResult {
  const nic = qp.nic;
  let pos = 0;
  for (const s of sgList) {
    const need = write ? NicAccess.LOCAL_WRITE : NicAccess.LOCAL_READ;
    const mr = nic.checkMkey(s.lkey, qp.pd, s.addr, s.length, need);
    if (mr === undefined) return NicAccessResult.PROTECTION;
    // One SGE covering the whole buffer (the common case) needs no view.
    const view = s.length === buf.length ? buf : buf.subarray(pos, pos + s.length);
    const r = nic.access(mr, s.addr, view, need);
    if (r !== NicAccessResult.OK) return r;
    pos += s.length;
  }
  return NicAccessResult.OK;
}

function remote(qp: IbQp, rkey: number, addr: number, buf: Uint8Array, need: NicAccess): NicAccessResult {
  const mr: IbMr | undefined = qp.nic.checkMkey(rkey, qp.pd, addr, buf.length, need);
  if (mr === undefined) return NicAccessResult.PROTECTION;
  return qp.nic.access(mr, addr, buf, need);
}

function localStatus(r: NicAccessResult, write: boolean): IbWcStatus {
  if (r === NicAccessResult.OK) return IbWcStatus.SUCCESS;
  // A failed local page fault or an IOMMU refusal of a local buffer is a local access error.
  return r === NicAccessResult.PROTECTION ? IbWcStatus.LOC_PROT_ERR : write ? IbWcStatus.LOC_ACCESS_ERR : IbWcStatus.LOC_PROT_ERR;
}

/**
 * The requester (`q`) and the responder (`r`) sides of one WR; returns the completion status (a status,
 * not an object: no allocation per WR).
 */
function execute(q: IbQp, r: IbQp, wr: IbSendWr): IbWcStatus {
  const clock = q.nic.clock;
  const len = totalLength(wr.sgList);
  switch (wr.opcode) {
    case IbWrOpcode.RDMA_WRITE: {
      const buf = q.nic[kWqeBuffer](len);
      const l = localSg(q, wr.sgList, buf, false);
      if (l !== NicAccessResult.OK) return localStatus(l, false);
      clock.advance(len * q.nic.costs.wireNsPerByte);
      const rr = remote(r, wr.rkey ?? 0, wr.remoteAddr ?? 0, buf, NicAccess.REMOTE_WRITE);
      if (rr !== NicAccessResult.OK) return IbWcStatus.REM_ACCESS_ERR;
      q.nic.counters.add(RdmaCounter.RdmaBytes, len);
      return IbWcStatus.SUCCESS;
    }
    case IbWrOpcode.RDMA_READ: {
      const buf = q.nic[kWqeBuffer](len);
      const rr = remote(r, wr.rkey ?? 0, wr.remoteAddr ?? 0, buf, NicAccess.REMOTE_READ);
      if (rr !== NicAccessResult.OK) return IbWcStatus.REM_ACCESS_ERR;
      clock.advance(len * q.nic.costs.wireNsPerByte);
      const l = localSg(q, wr.sgList, buf, true);
      if (l !== NicAccessResult.OK) return localStatus(l, true);
      q.nic.counters.add(RdmaCounter.RdmaBytes, len);
      return IbWcStatus.SUCCESS;
    }
    case IbWrOpcode.SEND: {
      const buf = q.nic[kWqeBuffer](len);
      const l = localSg(q, wr.sgList, buf, false);
      if (l !== NicAccessResult.OK) return localStatus(l, false);
      const recv = r[kRecvQueue].shift();
      // No receive posted: RNR NAKs until the retry count runs out (the model does not wait).
      if (recv === undefined || r.state !== IbQpState.RTS) return IbWcStatus.RNR_RETRY_EXC_ERR;
      clock.advance(len * q.nic.costs.wireNsPerByte);
      if (totalLength(recv.sgList) < len) {
        failRecv(r, recv.wrId, IbWcStatus.LOC_LEN_ERR);
        return IbWcStatus.REM_INV_REQ_ERR;
      }
      const rl = localSg(r, fitSg(recv.sgList, len), buf, true);
      if (rl !== NicAccessResult.OK) {
        failRecv(r, recv.wrId, localStatus(rl, true));
        return IbWcStatus.REM_OP_ERR;
      }
      complete(r.recvCq, { wrId: recv.wrId, status: IbWcStatus.SUCCESS, opcode: IbWcOpcode.RECV, byteLen: len, qpNum: r.qpNum });
      q.nic.counters.add(RdmaCounter.RdmaBytes, len);
      return IbWcStatus.SUCCESS;
    }
    default:
      return atomic(q, r, wr);
  }
}

function failRecv(r: IbQp, wrId: number, status: IbWcStatus): void {
  r.state = IbQpState.ERR;
  complete(r.recvCq, { wrId, status, opcode: IbWcOpcode.RECV, byteLen: 0, qpNum: r.qpNum });
}

/** The SGEs of a receive trimmed to the `len` bytes that arrived. */
function fitSg(sgList: readonly IbSge[], len: number): IbSge[] {
  const out: IbSge[] = [];
  let left = len;
  for (const s of sgList) {
    if (left === 0) break;
    const n = Math.min(left, s.length);
    out.push({ addr: s.addr, length: n, lkey: s.lkey });
    left -= n;
  }
  return out;
}

const U64 = (1n << 64n) - 1n;

/** 8-byte atomics at the responder: read, compute, write back (one locked read-modify-write of the NIC). */
function atomic(q: IbQp, r: IbQp, wr: IbSendWr): IbWcStatus {
  const addr = wr.remoteAddr ?? 0;
  if (addr % 8 !== 0) return IbWcStatus.REM_INV_REQ_ERR;
  const mr = r.nic.checkMkey(wr.rkey ?? 0, r.pd, addr, 8, NicAccess.REMOTE_ATOMIC);
  if (mr === undefined) return IbWcStatus.REM_ACCESS_ERR;
  const old = new Uint8Array(8);
  // Fault the page in for write before the read, so the read-modify-write sees one translation.
  const rr = r.nic.access(mr, addr, old, NicAccess.REMOTE_ATOMIC, false);
  if (rr !== NicAccessResult.OK) return IbWcStatus.REM_ACCESS_ERR;
  const view = new DataView(old.buffer);
  const value = view.getBigUint64(0, true);
  let next: bigint;
  if (wr.opcode === IbWrOpcode.ATOMIC_FETCH_AND_ADD) next = (value + (wr.compareAdd ?? 0n)) & U64;
  else next = value === ((wr.compareAdd ?? 0n) & U64) ? (wr.swap ?? 0n) & U64 : value;
  if (next !== value) {
    const nb = new Uint8Array(8);
    new DataView(nb.buffer).setBigUint64(0, next, true);
    const wr2 = r.nic.access(mr, addr, nb, NicAccess.REMOTE_ATOMIC, true);
    if (wr2 !== NicAccessResult.OK) return IbWcStatus.REM_ACCESS_ERR;
  }
  const l = localSg(q, wr.sgList, old, true);
  if (l !== NicAccessResult.OK) return localStatus(l, true);
  q.nic.counters.add(RdmaCounter.RdmaBytes, 8);
  return IbWcStatus.SUCCESS;
}
