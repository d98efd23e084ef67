import { performance } from "node:perf_hooks";
import { COST_PROFILE_NAMES, modelThroughput } from "@dmasim/dma";
import type { CostProfileName, DebugMode, IommuMode } from "@dmasim/dma";
import { createNvmeSystem, prefillNamespace, runP2pCase, runWorkload } from "@dmasim/nvme";
import type { BufferLayout, MappingStyle } from "@dmasim/nvme";
import { UsageError, choiceOption, intOption, numberOption, parseOptions, runCommand } from "./command.js";
import type { Io } from "./command.js";

export const WORKLOAD_HELP = `Usage: pnpm --filter @dmasim/nvme-example workload [-- options]

Runs a fio-like job against the simulated NVMe drive, every byte verified, and prints what the DMA
mapping did and cost.

  --ops N              I/Os to run (default 100000)
  --bs MIN[:MAX]       block size in bytes, or a range (default 4096)
  --read PCT           percentage of reads, 0-100 (default 100)
  --qd N               queue depth, 1-1024 (default 32)
  --seed N             seed of the job's generator, 0-4294967295 (default 1)
  --layout L           contiguous | scattered | offset (default contiguous)
  --mode M             IOMMU mode: strict | lazy | passthrough | off (default strict)
  --debug D            dma-debug: off | throw | collect (default off)
  --mapping S          iterator | sg-classic | sg-two-step (default iterator)
  --profile P          cost profile: ${COST_PROFILE_NAMES.join(" | ")} (default default)
  --cpus N             price the run for N CPUs with a queue each (default 1)
  --base-ns NS         CPU time per I/O outside the DMA API, in ns (default 1000, an assumption)
  --no-verify          do not check the bytes
  --p2p                also run the peer-to-peer cases
  -h, --help           this text
`;

export interface WorkloadArgs {
  readonly job: {
    readonly ops: number;
    readonly bsMin: number;
    readonly bsMax: number;
    readonly readPct: number;
    readonly queueDepth: number;
    readonly seed: number;
    readonly layout: BufferLayout;
    readonly verify: boolean;
  };
  readonly mode: IommuMode;
  readonly debug: DebugMode;
  readonly mapping: MappingStyle;
  readonly profile: CostProfileName;
  readonly cpus: number;
  readonly baseNs: number;
  readonly p2p: boolean;
}

/** The command line checked in full, or "help"; anything it cannot use is a UsageError naming the option. */
export function parseWorkloadArgs(argv: readonly string[]): WorkloadArgs | "help" {
  const v = parseOptions(argv, {
    ops: { type: "string" },
    bs: { type: "string" },
    read: { type: "string" },
    qd: { type: "string" },
    seed: { type: "string" },
    layout: { type: "string" },
    mode: { type: "string" },
    debug: { type: "string" },
    mapping: { type: "string" },
    profile: { type: "string" },
    cpus: { type: "string" },
    "base-ns": { type: "string" },
    "no-verify": { type: "boolean" },
    p2p: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (v.help === true) return "help";
  const bs = (v.bs ?? "4096").split(":");
  if (bs.length > 2) throw new UsageError(`--bs ${JSON.stringify(v.bs)} is invalid: expected MIN or MIN:MAX`);
  const bsMin = intOption("bs", bs[0], 4096, 1);
  const bsMax = intOption("bs", bs[1], bsMin, 1);
  if (bsMax < bsMin) throw new UsageError(`--bs ${JSON.stringify(v.bs)} is invalid: MAX is below MIN`);
  return {
    job: {
      ops: intOption("ops", v.ops, 100_000, 1),
      bsMin,
      bsMax,
      readPct: intOption("read", v.read, 100, 0, 100),
      queueDepth: intOption("qd", v.qd, 32, 1, 1024),
      seed: intOption("seed", v.seed, 1, 0, 0xffff_ffff),
      layout: choiceOption<BufferLayout>("layout", v.layout, "contiguous", ["contiguous", "scattered", "offset"]),
      verify: v["no-verify"] !== true,
    },
    mode: choiceOption<IommuMode>("mode", v.mode, "strict", ["strict", "lazy", "passthrough", "off"]),
    debug: choiceOption<DebugMode>("debug", v.debug, "off", ["off", "throw", "collect"]),
    mapping: choiceOption<MappingStyle>("mapping", v.mapping, "iterator", ["iterator", "sg-classic", "sg-two-step"]),
    profile: choiceOption<CostProfileName>("profile", v.profile, "default", COST_PROFILE_NAMES),
    cpus: intOption("cpus", v.cpus, 1, 1, 4096),
    baseNs: numberOption("base-ns", v["base-ns"], 1000, 0),
    p2p: v.p2p === true,
  };
}

/** The workload command: parse, run, print. Returns the exit status (runCommand says which). */
export function workloadMain(argv: readonly string[], io: Io): number {
  return runCommand("workload", io, () => {
    const a = parseWorkloadArgs(argv);
    if (a === "help") {
      io.out(WORKLOAD_HELP);
      return;
    }
    const sys = createNvmeSystem({ costProfile: a.profile, iommuMode: a.mode, debug: a.debug, mapping: a.mapping, queueDepth: a.job.queueDepth });
    const gen = prefillNamespace(sys);
    const t0 = performance.now();
    const r = runWorkload(sys, a.job, gen);
    const wall = performance.now() - t0;
    io.out(`job: ${JSON.stringify(a.job)}, mode ${a.mode}, debug ${a.debug}, mapping ${a.mapping}\n`);
    io.out(`${r.ops} I/Os (${r.reads} reads, ${r.writes} writes), ${(r.bytes / 2 ** 20).toFixed(1)} MiB, ${(r.verifiedBytes / 2 ** 20).toFixed(1)} MiB verified, ${r.mismatches} mismatches\n`);
    io.out(`commands: ${r.prpCommands} with PRPs, ${r.sglCommands} with SGLs\n`);
    io.out(`wall time ${(wall / 1000).toFixed(2)} s (${Math.round((r.ops / wall) * 1000).toLocaleString("en-US")} simulated I/Os per second)\n`);
    io.out(`modelled DMA mapping CPU time ${(r.costs.totalNs / 1e6).toFixed(1)} ms (${(r.costs.assumedNs / 1e6).toFixed(1)} ms on assumed figures), ${Math.round(r.costs.totalNs / r.ops)} ns per I/O\n`);
    io.out(`counters: ${JSON.stringify(r.costs.counters)}\n`);
    // N CPUs, one queue each, repeating these I/Os while sharing the IOVA tree lock and the invalidation
    // queue (modelThroughput); --base-ns is the CPU time per I/O outside the DMA API (assumed 1 µs).
    const t = modelThroughput({ cpus: a.cpus, report: r.costs, ios: r.ops, baseNs: a.baseNs });
    io.out(`modelled host IOPS on ${a.cpus} CPU(s), cost profile ${a.profile}: ${Math.round(t.iops).toLocaleString("en-US")} (limited by ${t.bottleneck}; invalidation queue ${(t.resources["inval-queue"].utilization * 100).toFixed(0)} % busy)\n`);
    if (a.p2p) {
      for (const [name, provider] of [["peer via switch", sys.peerViaSwitch], ["peer via host bridge", sys.peerViaHostBridge]] as const) {
        const p = runP2pCase(sys, provider);
        io.out(`P2P ${name}: map type ${String(p.mapType)}, ${p.verifiedBytes} bytes verified, TLPs peer-via-switch ${p.tlpsPeerViaSwitch}, peer-via-host-bridge ${p.tlpsPeerViaHostBridge}, PTE writes ${p.pteWrites}\n`);
      }
    }
  });
}
