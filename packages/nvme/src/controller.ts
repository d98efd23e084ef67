import { SparseStore, unsafePhysAddr } from "@dmasim/memory";
import type { Bar, Endpoint, Platform } from "@dmasim/pcie-p2p";
import { PcieAccessError } from "@dmasim/pcie-p2p";
import {
  NVME_CQE_BYTES,
  NVME_CTRL_PAGE_SIZE,
  NVME_SGL_DESC_BYTES,
  NVME_SQE_BYTES,
  NvmeOpcode,
  NvmePsdt,
  NvmeSglType,
  NvmeStatus,
  cqHeadDoorbell,
  decodeSqe,
  emptyCommand,
  getU64,
  sqTailDoorbell,
} from "./nvme-defs.js";
import type { NvmeRwCommand } from "./nvme-defs.js";
import { NvmeCommandError, NvmeInputError } from "./errors.js";
import { unsafeDmaAddr } from "@dmasim/dma";

/** The drive's identity: namespace size, LBA size, SGL support, MDTS. */
export interface NvmeControllerOptions {
  /** Namespace 1 capacity in bytes (a multiple of lbaSize). */
  readonly namespaceBytes: number;
  /** LBA data size; default 512. */
  readonly lbaSize?: number;
  /** Whether the controller accepts SGLs (Identify Controller SGLS); default true. */
  readonly sglSupported?: boolean;
  /** Maximum data transfer per command in bytes (MDTS); default 1 MiB. */
  readonly maxTransfer?: number;
}

interface IoQueue {
  sq: number;
  cq: number;
  depth: number;
  sqHead: number;
  cqTail: number;
  phase: number;
}

/** A data pointer element found while walking PRPs or SGLs: the next `len` bytes at device address `addr`. */
class Chunks {
  addr = new Float64Array(64);
  len = new Float64Array(64);
  count = 0;

  push(addr: number, len: number): void {
    if (this.count === this.addr.length) {
      const a = new Float64Array(this.count * 2);
      a.set(this.addr);
      this.addr = a;
      const l = new Float64Array(this.count * 2);
      l.set(this.len);
      this.len = l;
    }
    this.addr[this.count] = addr;
    this.len[this.count++] = len;
  }
}

/**
 * An NVMe-like controller on a PCIe endpoint. Everything it touches in host memory it reaches through the
 * fabric as the device (endpoint.dmaRead / dmaWrite): submission queue entries, PRP lists, SGL segments,
 * data, completion entries — so the IOMMU translates every access and a bad mapping is a real fault.
 * Doorbells are registers in BAR0 the CPU writes; `service()` is the controller noticing them.
 */
export class NvmeController {
  /** The PCIe endpoint the controller masters its DMA through. */
  readonly endpoint: Endpoint;
  /** BAR0: the controller's registers and doorbells. */
  readonly bar0: Bar;
  /** The bytes of namespace 1 (the medium), stored sparsely. */
  readonly namespace: SparseStore;
  /** Namespace 1 capacity in bytes. */
  readonly namespaceBytes: number;
  /** LBA data size in bytes. */
  readonly lbaSize: number;
  /** Whether the controller accepts SGLs (Identify Controller SGLS). */
  readonly sglSupported: boolean;
  /** Maximum data transfer per command in bytes (MDTS). */
  readonly maxTransfer: number;
  /** What the controller did: commands, errors, data bytes, PRP list and SGL segment reads, faults. */
  readonly stats = { commands: 0, errors: 0, dataBytes: 0, prpListReads: 0, sglSegmentReads: 0, faults: 0 };
  readonly #platform: Platform;
  readonly #queues = new Map<number, IoQueue>();
  readonly #sqe = new Uint8Array(NVME_SQE_BYTES);
  readonly #sqeView = new DataView(this.#sqe.buffer);
  readonly #cqe = new Uint8Array(NVME_CQE_BYTES);
  readonly #cqeView = new DataView(this.#cqe.buffer);
  readonly #list = new Uint8Array(NVME_CTRL_PAGE_SIZE);
  readonly #listView = new DataView(this.#list.buffer);
  readonly #data = new Uint8Array(NVME_CTRL_PAGE_SIZE * 16);
  readonly #cmd = emptyCommand();
  readonly #chunks = new Chunks();
  readonly #reg = new Uint8Array(4);
  readonly #regView = new DataView(this.#reg.buffer);

  constructor(platform: Platform, bdf: string, options: NvmeControllerOptions) {
    this.#platform = platform;
    this.endpoint = platform.endpoint(bdf);
    const bar = this.endpoint.bars.find((b) => b.index === 0);
    if (bar === undefined || bar.size < 0x2000) throw new NvmeInputError("NvmeController", `${bdf} BAR0 size`, bar?.size, "a BAR0 of at least 8 KiB for the doorbells");
    this.bar0 = bar;
    this.lbaSize = options.lbaSize ?? 512;
    if (![512, 4096].includes(this.lbaSize)) throw new NvmeInputError("NvmeController", "lbaSize", this.lbaSize, "512 or 4096");
    const ns = options.namespaceBytes;
    if (!Number.isSafeInteger(ns) || ns <= 0 || ns % this.lbaSize !== 0) throw new NvmeInputError("NvmeController", "namespaceBytes", ns, `a positive multiple of ${this.lbaSize}`);
    this.namespaceBytes = ns;
    this.namespace = new SparseStore(ns);
    this.sglSupported = options.sglSupported ?? true;
    this.maxTransfer = options.maxTransfer ?? 1024 * 1024;
  }

  /**
   * Create I/O Completion Queue + Create I/O Submission Queue (admin commands, modelled as one call): queue
   * `qid` with `depth` entries at device addresses `sq` and `cq`.
   */
  createIoQueuePair(qid: number, sq: number, cq: number, depth: number): void {
    if (!Number.isInteger(qid) || qid < 1 || this.#queues.has(qid)) throw new NvmeInputError("createIoQueuePair", "qid", qid, "an unused queue id >= 1");
    if (!Number.isInteger(depth) || depth < 2 || depth > 65536) throw new NvmeInputError("createIoQueuePair", "depth", depth, "2 to 65536 entries");
    this.#queues.set(qid, { sq, cq, depth, sqHead: 0, cqTail: 0, phase: 1 });
  }

  #readReg(offset: number): number {
    this.#platform.memory.readInto(unsafePhysAddr(this.bar0.phys + offset), this.#reg);
    return this.#regView.getUint32(0, true);
  }

  /** Commands waiting in queue `qid` (doorbell tail minus the controller's head). */
  pending(qid = 1): number {
    const q = this.#queue(qid);
    const tail = this.#readReg(sqTailDoorbell(qid));
    return (tail - q.sqHead + q.depth) % q.depth;
  }

  #queue(qid: number): IoQueue {
    const q = this.#queues.get(qid);
    if (q === undefined) throw new NvmeInputError("service", "qid", qid, "a queue created with createIoQueuePair");
    return q;
  }

  /**
   * Fetches and executes up to `max` commands of queue `qid` whose tail doorbell was rung, posting one
   * completion each. Stops early when the completion queue is full (the host has not consumed entries).
   * Returns the number of commands executed.
   */
  service(qid = 1, max = Infinity): number {
    const q = this.#queue(qid);
    const tail = this.#readReg(sqTailDoorbell(qid));
    let done = 0;
    while (q.sqHead !== tail && done < max) {
      const cqHead = this.#readReg(cqHeadDoorbell(qid));
      if ((q.cqTail + 1) % q.depth === cqHead) break;
      this.endpoint.dmaReadInto(unsafeDmaAddr(q.sq + q.sqHead * NVME_SQE_BYTES), this.#sqe);
      q.sqHead = (q.sqHead + 1) % q.depth;
      decodeSqe(this.#sqeView, 0, this.#cmd);
      const status = this.#execute(this.#cmd);
      this.#complete(q, qid, this.#cmd.cid, status);
      done++;
    }
    return done;
  }

  #complete(q: IoQueue, qid: number, cid: number, status: number): void {
    const v = this.#cqeView;
    v.setUint32(0, 0, true);
    v.setUint32(4, 0, true);
    v.setUint32(8, q.sqHead | (qid << 16), true);
    v.setUint32(12, cid | (((status << 1) | q.phase) << 16), true);
    this.endpoint.dmaWrite(unsafeDmaAddr(q.cq + q.cqTail * NVME_CQE_BYTES), this.#cqe);
    q.cqTail++;
    if (q.cqTail === q.depth) {
      q.cqTail = 0;
      q.phase ^= 1;
    }
  }

  #execute(cmd: NvmeRwCommand): number {
    this.stats.commands++;
    try {
      if ((cmd.opcode as number) !== NvmeOpcode.READ && (cmd.opcode as number) !== NvmeOpcode.WRITE) throw new NvmeCommandError(NvmeStatus.INVALID_OPCODE | NvmeStatus.DNR);
      const len = (cmd.nlb + 1) * this.lbaSize;
      const start = cmd.slba * this.lbaSize;
      if (start + len > this.namespaceBytes) throw new NvmeCommandError(NvmeStatus.LBA_RANGE | NvmeStatus.DNR);
      if (len > this.maxTransfer) throw new NvmeCommandError(NvmeStatus.INVALID_FIELD | NvmeStatus.DNR);
      const chunks = this.#chunks;
      chunks.count = 0;
      if (cmd.psdt === NvmePsdt.PRP) this.#walkPrps(cmd.prp1, cmd.prp2, len);
      else if (cmd.psdt === NvmePsdt.SGL_MPTR_CONTIG && this.sglSupported) this.#walkSgl(cmd.sglAddr, cmd.sglLen, cmd.sglType, len);
      else throw new NvmeCommandError(NvmeStatus.INVALID_FIELD | NvmeStatus.DNR);
      this.#transfer(cmd.opcode, start);
      this.stats.dataBytes += len;
      return NvmeStatus.SUCCESS;
    } catch (e) {
      this.stats.errors++;
      if (e instanceof NvmeCommandError) return e.status;
      if (e instanceof PcieAccessError) {
        this.stats.faults++;
        return NvmeStatus.DATA_XFER_ERROR | NvmeStatus.DNR;
      }
      throw e;
    }
  }

  /** Moves the data between the namespace and the chunks, in controller-page pieces. */
  #transfer(opcode: number, start: number): void {
    const ep = this.endpoint;
    const buf = this.#data;
    let at = start;
    for (let i = 0; i < this.#chunks.count; i++) {
      let addr = this.#chunks.addr[i] ?? 0;
      let left = this.#chunks.len[i] ?? 0;
      while (left > 0) {
        const n = Math.min(left, buf.length);
        const view = n === buf.length ? buf : buf.subarray(0, n);
        if (opcode === NvmeOpcode.READ) {
          this.namespace.readInto(at, view);
          ep.dmaWrite(unsafeDmaAddr(addr), view);
        } else {
          ep.dmaReadInto(unsafeDmaAddr(addr), view);
          this.namespace.write(at, view);
        }
        addr += n;
        at += n;
        left -= n;
      }
    }
  }

  /**
   * PRP walk (NVMe base spec, "Physical Region Page Entry and List"): PRP1 may start inside a page; PRP2
   * is the second page, or a PRP list whose last entry chains to the next list page when more follow.
   */
  #walkPrps(prp1: number, prp2: number, len: number): void {
    const P = NVME_CTRL_PAGE_SIZE;
    if (prp1 % 4 !== 0) throw new NvmeCommandError(NvmeStatus.INVALID_PRP_OFFSET | NvmeStatus.DNR);
    const first = Math.min(len, P - (prp1 % P));
    this.#chunks.push(prp1, first);
    let left = len - first;
    if (left === 0) return;
    if (left <= P) {
      if (prp2 % P !== 0) throw new NvmeCommandError(NvmeStatus.INVALID_PRP_OFFSET | NvmeStatus.DNR);
      this.#chunks.push(prp2, left);
      return;
    }
    let list = prp2;
    for (;;) {
      if (list % 8 !== 0) throw new NvmeCommandError(NvmeStatus.INVALID_PRP_OFFSET | NvmeStatus.DNR);
      const slots = (P - (list % P)) / 8;
      const needed = Math.ceil(left / P);
      const chained = needed > slots;
      const n = chained ? slots : needed;
      const view = this.#list.subarray(0, n * 8);
      this.endpoint.dmaReadInto(unsafeDmaAddr(list), view);
      this.stats.prpListReads++;
      const data = chained ? n - 1 : n;
      for (let j = 0; j < data; j++) {
        const e = getU64(this.#listView, j * 8);
        if (e % P !== 0) throw new NvmeCommandError(NvmeStatus.INVALID_PRP_OFFSET | NvmeStatus.DNR);
        const l = Math.min(left, P);
        this.#chunks.push(e, l);
        left -= l;
      }
      if (!chained) return;
      list = getU64(this.#listView, (n - 1) * 8);
    }
  }

  /** SGL walk: one inline data block, or (last) segment descriptors pointing at descriptor lists. */
  #walkSgl(addr: number, length: number, type: number, len: number): void {
    let left = len;
    let segAddr = addr;
    let segLen = length;
    let segType = type;
    for (;;) {
      if (segType === NvmeSglType.DATA_BLOCK) {
        if (segLen < left) throw new NvmeCommandError(NvmeStatus.SGL_INVALID_DATA | NvmeStatus.DNR);
        this.#chunks.push(segAddr, left);
        return;
      }
      if (segType !== NvmeSglType.SEGMENT && segType !== NvmeSglType.LAST_SEGMENT) throw new NvmeCommandError(NvmeStatus.SGL_INVALID_TYPE | NvmeStatus.DNR);
      if (segLen === 0 || segLen % NVME_SGL_DESC_BYTES !== 0 || segLen > this.#list.length) throw new NvmeCommandError(NvmeStatus.SGL_INVALID_DATA | NvmeStatus.DNR);
      const view = this.#list.subarray(0, segLen);
      this.endpoint.dmaReadInto(unsafeDmaAddr(segAddr), view);
      this.stats.sglSegmentReads++;
      const n = segLen / NVME_SGL_DESC_BYTES;
      let next = false;
      for (let j = 0; j < n; j++) {
        const at = j * NVME_SGL_DESC_BYTES;
        const dAddr = getU64(this.#listView, at);
        const dLen = this.#listView.getUint32(at + 8, true);
        const dType = this.#listView.getUint8(at + 15) >>> 4;
        if (dType === NvmeSglType.DATA_BLOCK) {
          const l = Math.min(dLen, left);
          if (l > 0) this.#chunks.push(dAddr, l);
          left -= l;
        } else if (dType === NvmeSglType.SEGMENT || dType === NvmeSglType.LAST_SEGMENT) {
          // Only the last descriptor of a (non-last) segment may point onward.
          if (j !== n - 1 || segType === NvmeSglType.LAST_SEGMENT) throw new NvmeCommandError(NvmeStatus.SGL_INVALID_TYPE | NvmeStatus.DNR);
          segAddr = dAddr;
          segLen = dLen;
          segType = dType;
          next = true;
        } else {
          throw new NvmeCommandError(NvmeStatus.SGL_INVALID_TYPE | NvmeStatus.DNR);
        }
      }
      if (!next) {
        if (left !== 0) throw new NvmeCommandError(NvmeStatus.SGL_INVALID_DATA | NvmeStatus.DNR);
        return;
      }
    }
  }
}
