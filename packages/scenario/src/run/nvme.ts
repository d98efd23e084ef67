import { createNvmeHost, runWorkload, WorkloadError } from "@dmasim/nvme";
import type { MappingStyle, NvmeHost } from "@dmasim/nvme";
import type { Api, NvmeWorkload, Scenario } from "../types.js";
import { finish } from "./finish.js";
import { kernelOptions, setUp } from "./host.js";
import { check } from "./result.js";
import type { RunContext } from "./context.js";
import type { RunResult } from "./result.js";

const MiB = 1024 * 1024;

/** classic: the scatterlist-era NVMe driver (blk_rq_map_sg + upstream dma_map_sg); two-step: the block layer's DMA iterator. */
export function mappingFor(api: Api): MappingStyle {
  return api === "classic" ? "sg-classic" : "iterator";
}

/** The NVMe drive of a scenario's platform, with the kernel the scenario asks for. */
export function nvmeHost(s: Scenario, ctx: RunContext, bdf: string, extra: { queueDepth?: number; namespaceBytes?: number; sglThreshold?: number }): NvmeHost {
  const k = kernelOptions(s, ctx);
  return setUp(`scenario "${s.name}"`, () =>
    createNvmeHost(s.platform, bdf, {
      iommuMode: ctx.iommu,
      debug: k.debug ?? "collect",
      ...(k.costProfile === undefined ? {} : { costProfile: k.costProfile }),
      mapping: mappingFor(ctx.api),
      namespaceBytes: extra.namespaceBytes ?? 8 * MiB,
      ...(extra.queueDepth === undefined ? {} : { queueDepth: extra.queueDepth }),
      ...(extra.sglThreshold === undefined ? {} : { sglThreshold: extra.sglThreshold }),
      kernel: {
        ...(k.swiotlb === undefined ? {} : { swiotlb: k.swiotlb }),
        ...(k.devices === undefined ? {} : { devices: k.devices }),
      },
    }),
  );
}

/** fio-like I/O through the NVMe driver; runWorkload verifies every byte read and every block written. */
export function runNvme(s: Scenario, w: NvmeWorkload, ctx: RunContext): RunResult {
  const queueDepth = w.queueDepth ?? 32;
  const host = nvmeHost(s, ctx, w.device, {
    queueDepth,
    ...(w.namespaceBytes === undefined ? {} : { namespaceBytes: w.namespaceBytes }),
    ...(w.sglThreshold === undefined ? {} : { sglThreshold: w.sglThreshold }),
  });
  ctx.onHost?.(`${s.name} ${ctx.api}/${ctx.iommu}`, host);
  const before = host.platform.trace.counters.snapshot();
  const checks = [];
  const mapped: string[] = [];
  const metrics: Record<string, number> = {};
  const bsMin = w.bsMin ?? 4096;
  const bsMax = w.bsMax ?? bsMin;
  const job = {
    ops: w.ops,
    bsMin,
    bsMax,
    readPct: w.readPct ?? 100,
    queueDepth,
    seed: s.seed ?? 1,
    layout: w.layout ?? "contiguous",
    order: w.order ?? "random",
  };
  const bs = bsMin === bsMax ? `${bsMin / 1024} KiB` : `${bsMin / 1024}–${bsMax / 1024} KiB`;
  mapped.push(`${w.ops.toLocaleString("en-US")} ${job.order} I/Os of ${bs} (${job.readPct}% reads, ${job.layout} buffers, queue depth ${queueDepth}) on NVMe ${w.device}`);
  const iterator = "blk_rq_dma_map_iter_start/next (one dma_iova_try_alloc, a dma_iova_link per phys vec, one dma_iova_sync), blk_rq_dma_unmap";
  const simple = "nvme_pci_setup_data_simple (one dma_map_phys, no IOVA state), dma_unmap_phys";
  try {
    const r = setUp(`workload of scenario "${s.name}"`, () => runWorkload(host, job));
    metrics.reads = r.reads;
    metrics.writes = r.writes;
    metrics.verifiedBytes = r.verifiedBytes;
    metrics.prpCommands = r.prpCommands;
    metrics.sglCommands = r.sglCommands;
    // What the 6.17+ driver did depends on the request: a single segment never reaches the iterator.
    if (ctx.api === "classic") mapped.push("per request: blk_rq_map_sg into an sg table, dma_map_sg as upstream iommu_dma_map_sg, dma_unmap_sg");
    else if (r.simpleCommands === r.ops) mapped.push(`per request (one segment each): ${simple}`);
    else if (r.simpleCommands === 0) mapped.push(`per request: ${iterator}`);
    else mapped.push(`per single-segment request (${r.simpleCommands.toLocaleString("en-US")}): ${simple}; per other request: ${iterator}`);
    checks.push(check("device saw the right bytes", r.mismatches === 0, `${r.verifiedBytes.toLocaleString("en-US")} bytes verified, ${r.mismatches} mismatch(es)`));
    checks.push(check("every command succeeded", r.errors === 0, `${r.ops.toLocaleString("en-US")} completions, ${r.errors} error(s)`));
  } catch (e) {
    if (!(e instanceof WorkloadError)) throw e;
    checks.push(check("workload completed", false, e.message));
  }
  return finish(s, ctx, host, [w.device], before, { checks, mapped, metrics });
}
