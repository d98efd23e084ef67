#!/usr/bin/env node
import { performance } from "node:perf_hooks";
import { isCostProfileName, modelThroughput } from "@dmasim/dma";
import type { DebugMode, IommuMode } from "@dmasim/dma";
import type { BufferLayout, MappingStyle } from "@dmasim/nvme";
import { createNvmeSystem, prefillNamespace, runP2pCase, runWorkload } from "@dmasim/nvme";

// pnpm --filter @dmasim/nvme-example workload [-- --ops 100000 --bs 4096[:65536] --read 100 --qd 32 --seed 1
//   --layout contiguous|scattered|offset --mode strict|lazy|passthrough|off --debug off|throw
//   --mapping iterator|sg-classic|sg-two-step --no-verify --p2p --profile vtd|smmuv3|… --cpus N --base-ns NS]
const args = process.argv.slice(2);
function opt(name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? (args[i + 1] ?? fallback) : fallback;
}
const [bsMin, bsMax] = opt("bs", "4096").split(":").map(Number);
const job = {
  ops: Number(opt("ops", "100000")),
  bsMin: bsMin ?? 4096,
  bsMax: bsMax ?? bsMin ?? 4096,
  readPct: Number(opt("read", "100")),
  queueDepth: Number(opt("qd", "32")),
  seed: Number(opt("seed", "1")),
  layout: opt("layout", "contiguous") as BufferLayout,
  verify: !args.includes("--no-verify"),
};
const profile = opt("profile", "default");
if (!isCostProfileName(profile)) {
  process.stderr.write(`--profile ${profile} is invalid: expected vtd, vtd-caching-mode, smmuv3, amd-vi, virtio-iommu or default\n`);
  process.exit(2);
}
const sys = createNvmeSystem({
  costProfile: profile,
  iommuMode: opt("mode", "strict") as IommuMode,
  debug: opt("debug", "off") as DebugMode,
  mapping: opt("mapping", "iterator") as MappingStyle,
  queueDepth: job.queueDepth,
});
const gen = prefillNamespace(sys);
const t0 = performance.now();
const r = runWorkload(sys, job, gen);
const wall = performance.now() - t0;
const out = process.stdout;
out.write(`job: ${JSON.stringify(job)}, mode ${opt("mode", "strict")}, debug ${opt("debug", "off")}, mapping ${opt("mapping", "iterator")}\n`);
out.write(`${r.ops} I/Os (${r.reads} reads, ${r.writes} writes), ${(r.bytes / 2 ** 20).toFixed(1)} MiB, ${(r.verifiedBytes / 2 ** 20).toFixed(1)} MiB verified, ${r.mismatches} mismatches\n`);
out.write(`commands: ${r.prpCommands} with PRPs, ${r.sglCommands} with SGLs\n`);
out.write(`wall time ${(wall / 1000).toFixed(2)} s (${Math.round((r.ops / wall) * 1000).toLocaleString("en-US")} simulated I/Os per second)\n`);
out.write(`modelled DMA mapping CPU time ${(r.costs.totalNs / 1e6).toFixed(1)} ms (${(r.costs.assumedNs / 1e6).toFixed(1)} ms on assumed figures), ${Math.round(r.costs.totalNs / r.ops)} ns per I/O\n`);
out.write(`counters: ${JSON.stringify(r.costs.counters)}\n`);
// N CPUs, one queue each, repeating these I/Os while sharing the IOVA tree lock and the invalidation
// queue (modelThroughput); --base-ns is the CPU time per I/O outside the DMA API (assumed 1 µs).
const cpus = Number(opt("cpus", "1"));
const t = modelThroughput({ cpus, report: r.costs, ios: r.ops, baseNs: Number(opt("base-ns", "1000")) });
out.write(`modelled host IOPS on ${cpus} CPU(s), cost profile ${profile}: ${Math.round(t.iops).toLocaleString("en-US")} (limited by ${t.bottleneck}; invalidation queue ${(t.resources["inval-queue"].utilization * 100).toFixed(0)} % busy)\n`);
if (args.includes("--p2p")) {
  for (const [name, provider] of [["peer via switch", sys.peerViaSwitch], ["peer via host bridge", sys.peerViaHostBridge]] as const) {
    const p = runP2pCase(sys, provider);
    out.write(`P2P ${name}: map type ${String(p.mapType)}, ${p.verifiedBytes} bytes verified, TLPs peer-via-switch ${p.tlpsPeerViaSwitch}, peer-via-host-bridge ${p.tlpsPeerViaHostBridge}, PTE writes ${p.pteWrites}\n`);
  }
}
