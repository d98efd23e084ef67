import { SHARED_RESOURCES } from "./cost-profiles.js";
import type { SharedResource } from "./cost-profiles.js";
import type { CostReport } from "./costs.js";
import { DmaOptionsError } from "./errors.js";
import type { InputIssue } from "@dmasim/trace";

/**
 * CPUs and queues in the model of time. A multi-queue workload runs one submission/completion loop per
 * CPU (blk-mq: one hardware queue per CPU); queue depth hides the device's latency, so each CPU is busy
 * all the time with its own work (the block layer, the driver, the DMA API) and, now and then, with
 * something every CPU shares: the IOVA tree's lock on a range-cache miss (alloc_iova / free_iova under
 * iova_rbtree_lock), or the IOMMU's one invalidation queue (VT-d qi_submit_sync, SMMUv3 CMD_SYNC,
 * AMD-Vi COMPLETION_WAIT, virtio-iommu's request virtqueue), where a CPU spins until the hardware has
 * worked through everything queued ahead of it.
 *
 * That is a closed queueing network with the CPUs as customers: a delay centre (each CPU's own work)
 * and one queueing centre per shared resource. Exact mean value analysis (Reiser & Lavenberg, 1980)
 * gives its throughput for 1..N CPUs; the device's IOPS, when given, caps it.
 */
export interface ThroughputInput {
  /** CPUs issuing I/O, one queue each (N-queue NVMe on N CPUs). */
  readonly cpus: number;
  /** What the measured I/Os cost: counters priced by a profile (kernel.costs(since)). */
  readonly report: Pick<CostReport, "totalNs" | "sharedNs">;
  /** How many I/Os the report covers. */
  readonly ios: number;
  /** CPU time per I/O outside the DMA API (block layer, driver, interrupt); default 0. */
  readonly baseNs?: number;
  /** The device's (or devices') most I/Os per second; default no limit. */
  readonly deviceIops?: number;
  /**
   * Independent instances of each shared resource the CPUs spread over evenly: IOVA domains (one
   * tree lock per device) and IOMMU units (one invalidation queue each). Default 1 of each.
   */
  readonly instances?: Partial<Record<SharedResource, number>>;
}

/**
 * How one shared resource (the IOVA tree lock, the invalidation queue) loads the CPUs, per I/O, by mean value
 * analysis.
 */
export interface ResourceLoad {
  /** Time per I/O holding the resource (its service demand). */
  readonly holdNs: number;
  /** Time per I/O waiting for it behind other CPUs, at `cpus` CPUs. */
  readonly waitNs: number;
  /** Fraction of the time one instance is held. */
  readonly utilization: number;
}

/**
 * The modelled throughput of `cpus` CPUs issuing I/O: I/Os per second, per-I/O time and the load of each shared
 * resource.
 */
export interface ThroughputResult {
  /** CPUs issuing I/O (as given). */
  readonly cpus: number;
  /** Modelled I/Os per second, all CPUs together, the device cap applied. */
  readonly iops: number;
  /** What the CPUs alone would do (no device cap). */
  readonly hostIops: number;
  /** CPU time per I/O without contention: base + DMA API. */
  readonly cpuNs: number;
  /** Per I/O, at `cpus` CPUs: CPU time including spinning for shared resources. */
  readonly perIoNs: number;
  /** Hold time, wait time and utilization of each shared resource at `cpus` CPUs. */
  readonly resources: Readonly<Record<SharedResource, ResourceLoad>>;
  /** What limits `iops`: the device, a shared resource (utilization ≥ 0.9), or the CPUs' own work. */
  readonly bottleneck: "device" | "cpu" | SharedResource;
}

function checkInput(input: ThroughputInput): void {
  const issues: InputIssue[] = [];
  const count = (path: string, v: unknown, min: number): void => {
    if (!(typeof v === "number" && Number.isSafeInteger(v) && v >= min)) issues.push({ path, value: v, expected: `an integer >= ${String(min)}` });
  };
  const ns = (path: string, v: unknown): void => {
    if (!(typeof v === "number" && Number.isFinite(v) && v >= 0)) issues.push({ path, value: v, expected: "a finite number >= 0" });
  };
  count("cpus", input.cpus, 1);
  count("ios", input.ios, 1);
  ns("report.totalNs", input.report.totalNs);
  for (const r of SHARED_RESOURCES) ns(`report.sharedNs.${r}`, input.report.sharedNs[r]);
  if (input.baseNs !== undefined) ns("baseNs", input.baseNs);
  if (input.deviceIops !== undefined && !(typeof input.deviceIops === "number" && input.deviceIops > 0)) {
    issues.push({ path: "deviceIops", value: input.deviceIops, expected: "a number of I/Os per second > 0" });
  }
  for (const r of SHARED_RESOURCES) {
    const m = input.instances?.[r];
    if (m !== undefined) count(`instances.${r}`, m, 1);
  }
  if (issues.length > 0) throw new DmaOptionsError("modelThroughput", "input", issues);
}

/** Modelled IOPS of `cpus` CPUs each running the priced I/O in a loop (exact MVA, then the device cap). */
export function modelThroughput(input: ThroughputInput): ThroughputResult {
  checkInput(input);
  const { cpus, ios } = input;
  const demand = (r: SharedResource): number => input.report.sharedNs[r] / ios;
  const sharedTotal = SHARED_RESOURCES.reduce((a, r) => a + demand(r), 0);
  const cpuNs = (input.baseNs ?? 0) + input.report.totalNs / ios;
  // The delay centre: each CPU's own work, the shared holds taken out (they are queued below).
  const think = cpuNs - sharedTotal;
  // One queueing centre per shared resource: m instances, each visited by 1/m of the I/Os.
  const centres = SHARED_RESOURCES.map((r) => {
    const m = Math.max(1, input.instances?.[r] ?? 1);
    return { r, m, perInstance: demand(r) / m, queue: 0, residence: 0 };
  });
  let x = 0;
  for (let n = 1; n <= cpus; n++) {
    let cycle = think;
    for (const c of centres) {
      // One instance's residence (its demand stretched by the CPUs queued ahead), times the m instances.
      c.residence = c.perInstance * (1 + c.queue) * c.m;
      cycle += c.residence;
    }
    x = cycle > 0 ? n / cycle : Infinity;
    for (const c of centres) c.queue = (x * c.residence) / c.m;
  }
  const hostIops = x * 1e9;
  const iops = input.deviceIops === undefined ? hostIops : Math.min(hostIops, input.deviceIops);
  const resources = Object.fromEntries(
    centres.map((c) => [c.r, { holdNs: demand(c.r), waitNs: c.residence - demand(c.r), utilization: (iops / 1e9) * c.perInstance }]),
  ) as Record<SharedResource, ResourceLoad>;
  let bottleneck: ThroughputResult["bottleneck"] = input.deviceIops !== undefined && input.deviceIops <= hostIops ? "device" : "cpu";
  if (bottleneck === "cpu") {
    let most = 0.9;
    for (const r of SHARED_RESOURCES) {
      if (resources[r].utilization >= most) {
        most = resources[r].utilization;
        bottleneck = r;
      }
    }
  }
  return { cpus, iops, hostIops, cpuNs, perIoNs: hostIops > 0 ? (cpus * 1e9) / hostIops : 0, resources, bottleneck };
}
