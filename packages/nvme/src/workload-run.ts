import { Bio, BLK_STS_OK, ReqOp, Request, bvecAt, blkStatusName } from "@dmasim/bio";
import type { BioVec } from "@dmasim/bio";
import type { PhysicalMemory } from "@dmasim/memory";
import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import { Xorshift32 } from "@dmasim/trace";
import type { CounterSnapshot } from "@dmasim/trace";
import { hex } from "@dmasim/trace";
import type { NvmeCompletion } from "./driver.js";
import { WorkloadError } from "./errors.js";
import { VERIFY_BLOCK, patternInto, patternMatches } from "./pattern.js";
import type { NvmeHost } from "./system.js";
import type { WorkloadOptions, WorkloadResult } from "./workload-options.js";

/** A request in flight: its buffer slot, where it goes on the medium, and the generations a write carries. */
interface InFlight {
  readonly slot: number;
  readonly block: number;
  readonly nblocks: number;
  readonly vecs: readonly BioVec[];
  readonly gens: Uint32Array | undefined;
}

/**
 * The state of one job and its steps: build a request's buffer, submit it, verify its completion, report.
 * Every random choice comes from one Xorshift32 seeded with the job's seed, in submission order.
 */
export class WorkloadRun {
  submitted = 0;
  completed = 0;
  readonly #sys: NvmeHost;
  readonly #o: Required<WorkloadOptions>;
  readonly #mem: PhysicalMemory;
  readonly #rng: Xorshift32;
  /** The generation each block's latest completed write carries: what a read must return. */
  readonly #gen: Uint32Array;
  /** The generation each block's latest submitted write carries; completions (one queue, in order) make it `#gen`. */
  readonly #issued: Uint32Array;
  readonly #poolPages: number;
  readonly #slotBase: Float64Array;
  readonly #freeSlots: number[] = [];
  readonly #inflight = new Map<Request, InFlight>();
  readonly #expect32 = new Uint32Array(VERIFY_BLOCK / 4);
  readonly #expect8 = new Uint8Array(this.#expect32.buffer);
  readonly #got8 = new Uint8Array(VERIFY_BLOCK);
  readonly #got32 = new Uint32Array(this.#got8.buffer);
  readonly #perm: Int32Array;
  readonly #before: CounterSnapshot;
  readonly #drvBefore: { readonly prpCommands: number; readonly sglCommands: number; readonly simpleCommands: number };
  readonly #onComplete = (c: NvmeCompletion): void => {
    this.#complete(c);
  };
  #reads = 0;
  #writes = 0;
  #bytes = 0;
  #verified = 0;
  #mismatches = 0;
  #errors = 0;
  #nextBlock = 0;

  constructor(sys: NvmeHost, o: Required<WorkloadOptions>, gen: Uint32Array) {
    this.#sys = sys;
    this.#o = o;
    this.#mem = sys.platform.memory;
    this.#rng = new Xorshift32(o.seed);
    this.#gen = gen;
    this.#issued = gen.slice();
    // Host buffers: per slot a run of pages (twice as many for the scattered layout, to pick from).
    this.#poolPages = (o.layout === "scattered" ? 2 : 1) * (o.bsMax / PAGE_SIZE) + 1;
    this.#slotBase = new Float64Array(o.queueDepth);
    for (let s = 0; s < o.queueDepth; s++) this.#slotBase[s] = this.#mem.allocator.allocPages(this.#poolPages);
    for (let s = o.queueDepth - 1; s >= 0; s--) this.#freeSlots.push(s);
    this.#perm = new Int32Array(this.#poolPages);
    this.#before = sys.platform.trace.counters.snapshot();
    this.#drvBefore = { ...sys.driver.stats };
  }

  /** The buffer of a request of `pages` pages in slot `slot`, laid out as the job says. */
  #buildVecs(slot: number, pages: number): BioVec[] {
    const base = this.#slotBase[slot] ?? 0;
    if (this.#o.layout === "contiguous") return [bvecAt(unsafePhysAddr(base), pages * PAGE_SIZE)];
    if (this.#o.layout === "offset") return [bvecAt(unsafePhysAddr(base + 512), pages * PAGE_SIZE)];
    // Partial Fisher–Yates: `pages` distinct pages of the slot's pool, in random order.
    const perm = this.#perm;
    for (let i = 0; i < this.#poolPages - 1; i++) perm[i] = i;
    const vecs: BioVec[] = [];
    for (let i = 0; i < pages; i++) {
      const j = this.#rng.int(i, this.#poolPages - 2);
      const t = perm[j] ?? 0;
      perm[j] = perm[i] ?? 0;
      perm[i] = t;
      vecs.push(bvecAt(unsafePhysAddr(base + t * PAGE_SIZE), PAGE_SIZE));
    }
    return vecs;
  }

  /** The next I/O's first block: random, or where the previous one ended (wrapping at the end). */
  #pickBlock(nblocks: number): number {
    if (this.#o.order === "random") return this.#rng.int(0, this.#gen.length - nblocks);
    if (this.#nextBlock + nblocks > this.#gen.length) this.#nextBlock = 0;
    const block = this.#nextBlock;
    this.#nextBlock += nblocks;
    return block;
  }

  /** A write's data: the next generation of each block's pattern, written by the CPU into the buffer. */
  #fillWrite(vecs: readonly BioVec[], block: number, nblocks: number): Uint32Array {
    const g = new Uint32Array(nblocks);
    eachPage(vecs, (phys, i) => {
      const next = (this.#issued[block + i] ?? 0) + 1;
      this.#issued[block + i] = next;
      g[i] = next;
      patternInto(this.#expect32, block + i, next);
      this.#mem.write(unsafePhysAddr(phys), this.#expect8);
    });
    return g;
  }

  /** Builds one request (size, place, direction, buffer) and queues it with the driver. */
  submit(): void {
    const o = this.#o;
    const slot = this.#freeSlots.pop();
    if (slot === undefined) throw new WorkloadError("no free buffer slot (internal error)");
    const nblocks = this.#rng.int(o.bsMin / VERIFY_BLOCK, o.bsMax / VERIFY_BLOCK);
    const block = this.#pickBlock(nblocks);
    const isRead = this.#rng.chance(o.readPct / 100);
    const vecs = this.#buildVecs(slot, nblocks);
    let gens: Uint32Array | undefined;
    // A read buffer is poisoned first, so only the device can make it right.
    if (isRead) {
      if (o.verify) for (const v of vecs) this.#mem.fill(unsafePhysAddr(v.page * PAGE_SIZE + v.offset), v.len, 0xee);
    } else gens = this.#fillWrite(vecs, block, nblocks);
    const bio = new Bio(this.#mem, { op: isRead ? ReqOp.READ : ReqOp.WRITE, sector: (block * VERIFY_BLOCK) / 512, vecs });
    const rq = Request.fromBio(this.#sys.driver.limits, bio);
    const st = this.#sys.driver.queueRq(rq);
    if (st !== BLK_STS_OK) throw new WorkloadError(`request ${this.submitted} (${isRead ? "read" : "write"} of ${nblocks * VERIFY_BLOCK} bytes) was refused: ${blkStatusName(st)}`);
    this.#inflight.set(rq, { slot, block, nblocks, vecs, gens });
    this.submitted++;
  }

  /** The controller works through a random share of what is pending, then the host polls. */
  serviceAndPoll(): void {
    const { controller, driver } = this.#sys;
    controller.service(1, this.#rng.int(1, driver.inFlight));
    driver.poll(this.#onComplete);
  }

  #complete(c: NvmeCompletion): void {
    const io = this.#inflight.get(c.rq);
    if (io === undefined) throw new WorkloadError("completion of an unknown request (internal error)");
    this.#inflight.delete(c.rq);
    this.completed++;
    this.#bytes += c.rq.dataLen;
    if (c.status !== BLK_STS_OK) {
      this.#errors++;
      throw new WorkloadError(`request at block ${io.block} failed: NVMe status ${hex(c.nvmeStatus)}`);
    }
    if (c.rq.op === ReqOp.READ) this.#verifyRead(io);
    else this.#verifyWrite(io);
    this.#freeSlots.push(io.slot);
  }

  /** Every page read must hold its block's latest completed generation. */
  #verifyRead(io: InFlight): void {
    this.#reads++;
    if (!this.#o.verify) return;
    eachPage(io.vecs, (phys, i) => {
      this.#mem.readInto(unsafePhysAddr(phys), this.#got8);
      if (!patternMatches(this.#got32, io.block + i, this.#gen[io.block + i] ?? 0)) this.#mismatches++;
      this.#verified += VERIFY_BLOCK;
    });
  }

  /** A completed write becomes the expected content; the medium must hold it unless a later write already replaced it. */
  #verifyWrite(io: InFlight): void {
    this.#writes++;
    const gen = this.#gen;
    for (let i = 0; i < io.nblocks; i++) gen[io.block + i] = io.gens?.[i] ?? 0;
    if (!this.#o.verify) return;
    for (let i = 0; i < io.nblocks; i++) {
      if (this.#issued[io.block + i] !== io.gens?.[i]) continue;
      this.#sys.controller.namespace.readInto((io.block + i) * VERIFY_BLOCK, this.#got8);
      if (!patternMatches(this.#got32, io.block + i, gen[io.block + i] ?? 0)) this.#mismatches++;
      this.#verified += VERIFY_BLOCK;
    }
  }

  releaseBuffers(): void {
    for (let s = 0; s < this.#o.queueDepth; s++) this.#mem.allocator.freePages(unsafePhysAddr(this.#slotBase[s] ?? 0), this.#poolPages);
  }

  /** The job's figures; a job whose data did not verify is an error, not a result. */
  result(): WorkloadResult {
    if (this.#mismatches > 0) throw new WorkloadError(`${this.#mismatches} block(s) did not verify`);
    const stats = this.#sys.driver.stats;
    return {
      ops: this.completed,
      reads: this.#reads,
      writes: this.#writes,
      bytes: this.#bytes,
      verifiedBytes: this.#verified,
      mismatches: this.#mismatches,
      errors: this.#errors,
      prpCommands: stats.prpCommands - this.#drvBefore.prpCommands,
      sglCommands: stats.sglCommands - this.#drvBefore.sglCommands,
      simpleCommands: stats.simpleCommands - this.#drvBefore.simpleCommands,
      costs: this.#sys.kernel.costs(this.#before),
    };
  }
}

/** The CPU side of a request's buffer, page by page (VERIFY_BLOCK == PAGE_SIZE). */
function eachPage(vecs: readonly BioVec[], fn: (phys: number, index: number) => void): void {
  let index = 0;
  for (const v of vecs) {
    const start = v.page * PAGE_SIZE + v.offset;
    for (let off = 0; off < v.len; off += PAGE_SIZE) fn(start + off, index++);
  }
}
