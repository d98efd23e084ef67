import { Bio, BLK_STS_OK, ReqOp, Request, bvecAt, blkStatusName } from "@dmasim/bio";
import type { BioVec } from "@dmasim/bio";
import type { CostReport } from "@dmasim/dma";
import { PAGE_SIZE, Xorshift32 } from "@dmasim/memory";
import { hex } from "@dmasim/trace";
import type { NvmeCompletion } from "./driver.js";
import { VERIFY_BLOCK, patternInto, patternMatches } from "./pattern.js";
import type { NvmeHost } from "./system.js";
import { NvmeInputError, WorkloadError } from "./errors.js";

/** How a request's host buffer is laid out in physical memory. */
export type BufferLayout = "contiguous" | "scattered" | "offset";

/** fio-like job parameters. */
export interface WorkloadOptions {
  /** Number of I/Os to complete. */
  readonly ops: number;
  /** Block size range (fio bsrange) in bytes, multiples of 4 KiB. Default 4 KiB. */
  readonly bsMin?: number;
  readonly bsMax?: number;
  /** Percentage of reads (fio rwmixread). Default 100. */
  readonly readPct?: number;
  /** I/Os kept in flight (fio iodepth); at most the driver's queue depth. Default the driver's. */
  readonly queueDepth?: number;
  readonly seed?: number;
  /** contiguous: one bvec; scattered: one bvec per page from random pages; offset: one bvec starting 512 bytes into a page. */
  readonly layout?: BufferLayout;
  /** Check every byte read and every block written (default true). */
  readonly verify?: boolean;
  /** random (default): each I/O at a random block; sequential: each I/O starts where the previous ended, wrapping at the end (fio rw=read/write). */
  readonly order?: "random" | "sequential";
}

export interface WorkloadResult {
  readonly ops: number;
  readonly reads: number;
  readonly writes: number;
  readonly bytes: number;
  readonly verifiedBytes: number;
  readonly mismatches: number;
  readonly errors: number;
  readonly prpCommands: number;
  readonly sglCommands: number;
  /** Requests nvme_pci_setup_data_simple mapped (one segment, one dma_map_phys; also counted as PRP or SGL). */
  readonly simpleCommands: number;
  /** Counters and modelled time of the run. */
  readonly costs: CostReport;
}

function checkOptions(o: WorkloadOptions, qdMax: number, nsBytes: number, maxBytes: number): Required<WorkloadOptions> {
  const full: Required<WorkloadOptions> = {
    ops: o.ops,
    bsMin: o.bsMin ?? 4096,
    bsMax: o.bsMax ?? o.bsMin ?? 4096,
    readPct: o.readPct ?? 100,
    queueDepth: o.queueDepth ?? qdMax,
    seed: o.seed ?? 1,
    layout: o.layout ?? "contiguous",
    verify: o.verify ?? true,
    order: o.order ?? "random",
  };
  if (!Number.isSafeInteger(full.seed) || full.seed < 0 || full.seed > 0xffffffff) throw new NvmeInputError("runWorkload", "seed", full.seed, "an integer from 0 to 0xffffffff");
  if (!Number.isSafeInteger(full.ops) || full.ops < 1) throw new NvmeInputError("runWorkload", "ops", full.ops, "a positive integer");
  for (const k of ["bsMin", "bsMax"] as const) {
    const v = full[k];
    if (!Number.isSafeInteger(v) || v < 4096 || v % 4096 !== 0 || v > nsBytes) throw new NvmeInputError("runWorkload", k, v, "a multiple of 4096 up to the namespace size");
  }
  // The block layer would split a larger bio; the generator builds requests that fit instead.
  if (full.bsMax > maxBytes) throw new NvmeInputError("runWorkload", "bsMax", full.bsMax, `at most the queue's max_hw_sectors, ${maxBytes} bytes (dma_opt_mapping_size caps it at 128 KiB behind iommu-dma)`);
  if (full.bsMax < full.bsMin) throw new NvmeInputError("runWorkload", "bsMax", full.bsMax, `at least bsMin = ${full.bsMin}`);
  if (!(full.readPct >= 0 && full.readPct <= 100)) throw new NvmeInputError("runWorkload", "readPct", full.readPct, "0 to 100");
  if (!Number.isInteger(full.queueDepth) || full.queueDepth < 1 || full.queueDepth > qdMax) throw new NvmeInputError("runWorkload", "queueDepth", full.queueDepth, `1 to the driver's ${qdMax}`);
  if (!["random", "sequential"].includes(full.order)) throw new NvmeInputError("runWorkload", "order", full.order, '"random" or "sequential"');
  if (!["contiguous", "scattered", "offset"].includes(full.layout)) throw new NvmeInputError("runWorkload", "layout", full.layout, '"contiguous", "scattered" or "offset"');
  return full;
}

/** Fills the namespace with generation-0 data (what the drive held before the job). */
export function prefillNamespace(sys: NvmeHost): Uint32Array {
  const blocks = Math.floor(sys.controller.namespaceBytes / VERIFY_BLOCK);
  const words = new Uint32Array(VERIFY_BLOCK / 4);
  const bytes = new Uint8Array(words.buffer);
  for (let b = 0; b < blocks; b++) {
    patternInto(words, b, 0);
    sys.controller.namespace.write(b * VERIFY_BLOCK, bytes);
  }
  return new Uint32Array(blocks);
}

/**
 * Runs a job: keeps up to `queueDepth` requests in flight, lets the controller execute a random number
 * of the pending commands at a time, and verifies every completion against the expected data.
 */
export function runWorkload(sys: NvmeHost, options: WorkloadOptions, generations?: Uint32Array): WorkloadResult {
  const { driver, controller, platform, kernel } = sys;
  const o = checkOptions(options, driver.queueDepth, controller.namespaceBytes, driver.limits.maxSectors * 512);
  const mem = platform.memory;
  const rng = new Xorshift32(o.seed);
  const gen = generations ?? prefillNamespace(sys);
  const blocks = gen.length;
  const maxPages = o.bsMax / PAGE_SIZE;
  // Host buffers: per slot a run of pages (twice as many for the scattered layout, to pick from).
  const poolPages = (o.layout === "scattered" ? 2 : 1) * maxPages + 1;
  const slots = o.queueDepth;
  const slotBase = new Float64Array(slots);
  for (let s = 0; s < slots; s++) slotBase[s] = mem.allocator.allocPages(poolPages);
  const freeSlots: number[] = [];
  for (let s = slots - 1; s >= 0; s--) freeSlots.push(s);
  // The generation each block's latest submitted write carries; completions (in submission order, one
  // queue) make it the expected content.
  const issued = gen.slice();
  const inflight = new Map<Request, { slot: number; block: number; nblocks: number; vecs: readonly BioVec[]; gens: Uint32Array | undefined }>();
  const expect32 = new Uint32Array(VERIFY_BLOCK / 4);
  const expect8 = new Uint8Array(expect32.buffer);
  const got8 = new Uint8Array(VERIFY_BLOCK);
  const got32 = new Uint32Array(got8.buffer);
  const perm = new Int32Array(poolPages);
  const before = platform.trace.counters.snapshot();
  const drvBefore = { ...driver.stats };
  let submitted = 0;
  let completed = 0;
  let reads = 0;
  let writes = 0;
  let bytes = 0;
  let verified = 0;
  let mismatches = 0;
  let errors = 0;
  let nextBlock = 0;

  const buildVecs = (slot: number, pages: number): BioVec[] => {
    const base = slotBase[slot] ?? 0;
    if (o.layout === "contiguous") return [bvecAt(base, pages * PAGE_SIZE)];
    if (o.layout === "offset") return [bvecAt(base + 512, pages * PAGE_SIZE)];
    // Partial Fisher–Yates: `pages` distinct pages of the slot's pool, in random order.
    for (let i = 0; i < poolPages - 1; i++) perm[i] = i;
    const vecs: BioVec[] = [];
    for (let i = 0; i < pages; i++) {
      const j = rng.int(i, poolPages - 2);
      const t = perm[j] ?? 0;
      perm[j] = perm[i] ?? 0;
      perm[i] = t;
      vecs.push(bvecAt(base + t * PAGE_SIZE, PAGE_SIZE));
    }
    return vecs;
  };

  // The CPU side of a request's buffer, page by page (VERIFY_BLOCK == PAGE_SIZE).
  const eachPage = (vecs: readonly BioVec[], fn: (phys: number, index: number) => void): void => {
    let index = 0;
    for (const v of vecs) {
      const start = v.page * PAGE_SIZE + v.offset;
      for (let off = 0; off < v.len; off += PAGE_SIZE) fn(start + off, index++);
    }
  };

  const submit = (): void => {
    const slot = freeSlots.pop();
    if (slot === undefined) throw new WorkloadError("no free buffer slot (internal error)");
    const nblocks = rng.int(o.bsMin / VERIFY_BLOCK, o.bsMax / VERIFY_BLOCK);
    let block: number;
    if (o.order === "sequential") {
      if (nextBlock + nblocks > blocks) nextBlock = 0;
      block = nextBlock;
      nextBlock += nblocks;
    } else block = rng.int(0, blocks - nblocks);
    const isRead = rng.chance(o.readPct / 100);
    const vecs = buildVecs(slot, nblocks);
    let gens: Uint32Array | undefined;
    if (isRead) {
      if (o.verify) for (const v of vecs) mem.fill(v.page * PAGE_SIZE + v.offset, v.len, 0xee);
    } else {
      const g = new Uint32Array(nblocks);
      eachPage(vecs, (phys, i) => {
        const next = (issued[block + i] ?? 0) + 1;
        issued[block + i] = next;
        g[i] = next;
        patternInto(expect32, block + i, next);
        mem.write(phys, expect8);
      });
      gens = g;
    }
    const bio = new Bio(mem, { op: isRead ? ReqOp.READ : ReqOp.WRITE, sector: (block * VERIFY_BLOCK) / 512, vecs });
    const rq = Request.fromBio(driver.limits, bio);
    const st = driver.queueRq(rq);
    if (st !== BLK_STS_OK) throw new WorkloadError(`request ${submitted} (${isRead ? "read" : "write"} of ${nblocks * VERIFY_BLOCK} bytes) was refused: ${blkStatusName(st)}`);
    inflight.set(rq, { slot, block, nblocks, vecs, gens });
    submitted++;
  };

  const onComplete = (c: NvmeCompletion): void => {
    const io = inflight.get(c.rq);
    if (io === undefined) throw new WorkloadError("completion of an unknown request (internal error)");
    inflight.delete(c.rq);
    completed++;
    bytes += c.rq.dataLen;
    if (c.status !== BLK_STS_OK) {
      errors++;
      throw new WorkloadError(`request at block ${io.block} failed: NVMe status ${hex(c.nvmeStatus)}`);
    }
    if (c.rq.op === ReqOp.READ) {
      reads++;
      if (o.verify) {
        eachPage(io.vecs, (phys, i) => {
          mem.readInto(phys, got8);
          if (!patternMatches(got32, io.block + i, gen[io.block + i] ?? 0)) mismatches++;
          verified += VERIFY_BLOCK;
        });
      }
    } else {
      writes++;
      for (let i = 0; i < io.nblocks; i++) gen[io.block + i] = io.gens?.[i] ?? 0;
      if (o.verify) {
        for (let i = 0; i < io.nblocks; i++) {
          // A later write to the block may already have been executed; reads will check that one.
          if (issued[io.block + i] !== io.gens?.[i]) continue;
          controller.namespace.readInto((io.block + i) * VERIFY_BLOCK, got8);
          if (!patternMatches(got32, io.block + i, gen[io.block + i] ?? 0)) mismatches++;
          verified += VERIFY_BLOCK;
        }
      }
    }
    freeSlots.push(io.slot);
  };

  while (completed < o.ops) {
    while (driver.inFlight < o.queueDepth && submitted < o.ops) submit();
    // The controller works through a random share of what is pending before the host polls.
    controller.service(1, rng.int(1, driver.inFlight));
    driver.poll(onComplete);
  }
  for (let s = 0; s < slots; s++) mem.allocator.freePages(slotBase[s] ?? 0, poolPages);
  if (mismatches > 0) throw new WorkloadError(`${mismatches} block(s) did not verify`);
  const costs = kernel.costs(before);
  return {
    ops: completed,
    reads,
    writes,
    bytes,
    verifiedBytes: verified,
    mismatches,
    errors,
    prpCommands: driver.stats.prpCommands - drvBefore.prpCommands,
    sglCommands: driver.stats.sglCommands - drvBefore.sglCommands,
    simpleCommands: driver.stats.simpleCommands - drvBefore.simpleCommands,
    costs,
  };
}
