import type { CostReport } from "@dmasim/dma";
import { NvmeInputError } from "./errors.js";

/** How a request's host buffer is laid out in physical memory. */
export type BufferLayout = "contiguous" | "scattered" | "offset";

/** fio-like job parameters. */
export interface WorkloadOptions {
  /** Number of I/Os to complete. */
  readonly ops: number;
  /** Block size range (fio bsrange) in bytes, multiples of 4 KiB. Default 4 KiB. */
  readonly bsMin?: number;
  /** Largest block size in bytes; default bsMin. */
  readonly bsMax?: number;
  /** Percentage of reads (fio rwmixread). Default 100. */
  readonly readPct?: number;
  /** I/Os kept in flight (fio iodepth); at most the driver's queue depth. Default the driver's. */
  readonly queueDepth?: number;
  /** Seed of the workload's Xorshift32 (offsets, sizes, read/write mix); default 1. */
  readonly seed?: number;
  /** contiguous: one bvec; scattered: one bvec per page from random pages; offset: one bvec starting 512 bytes into a page. */
  readonly layout?: BufferLayout;
  /** Check every byte read and every block written (default true). */
  readonly verify?: boolean;
  /** random (default): each I/O at a random block; sequential: each I/O starts where the previous ended, wrapping at the end (fio rw=read/write). */
  readonly order?: "random" | "sequential";
}

/** What `runWorkload` did and what it found. */
export interface WorkloadResult {
  /** I/Os completed. */
  readonly ops: number;
  /** Reads completed. */
  readonly reads: number;
  /** Writes completed. */
  readonly writes: number;
  /** Bytes transferred. */
  readonly bytes: number;
  /** Bytes compared with what they should be. */
  readonly verifiedBytes: number;
  /** Blocks whose bytes differed from what they should be. */
  readonly mismatches: number;
  /** I/Os that completed with an error status. */
  readonly errors: number;
  /** Commands that described their data with PRPs. */
  readonly prpCommands: number;
  /** Commands that described their data with SGLs. */
  readonly sglCommands: number;
  /** Requests nvme_pci_setup_data_simple mapped (one segment, one dma_map_phys; also counted as PRP or SGL). */
  readonly simpleCommands: number;
  /** Counters and modelled time of the run. */
  readonly costs: CostReport;
}

/** The job with every default filled in, or an NvmeInputError naming the first bad option. */
export function checkOptions(o: WorkloadOptions, qdMax: number, nsBytes: number, maxBytes: number): Required<WorkloadOptions> {
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

