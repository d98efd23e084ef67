import { DmaDirection, unsafeDmaAddr } from "@dmasim/dma";
import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import { Xorshift32 } from "@dmasim/trace";
import { dmaMapSgtable, dmaUnmapSgtable, sgAllocTable, sgFreeTable, sgSetPhys, sgtableDmaSegments } from "@dmasim/scatterlist";
import type { Scenario, SgWorkload } from "../types.js";
import { finish, pattern } from "./finish.js";
import type { Outcome } from "./finish.js";
import { createHost, setUp } from "./host.js";
import { check } from "./result.js";
import type { RunContext } from "./context.js";
import type { RunResult } from "./result.js";
import type { PhysAddr } from "@dmasim/memory";

/**
 * sg tables mapped with dma_map_sgtable: classic is upstream iommu_dma_map_sg (one IOVA, iommu_map_sg,
 * __finalise_sg), two-step is the same list mapped through dma_iova_* (@dmasim/scatterlist's default).
 * The device reads every DMA segment in order; together they must be the entries' bytes in order.
 */
export function runSg(s: Scenario, w: SgWorkload, ctx: RunContext): RunResult {
  const host = createHost(s, ctx);
  const { platform, kernel } = host;
  const dev = setUp(`workload.device of scenario "${s.name}"`, () => kernel.device(w.device));
  ctx.onHost?.(`${s.name} ${ctx.api}/${ctx.iommu}`, host);
  const mem = platform.memory;
  const rng = new Xorshift32(s.seed ?? 1);
  const offset = w.offset ?? 0;
  const gap = (w.layout ?? "scattered") === "scattered" ? 1 : 0;
  const sizes = Array.from({ length: w.entries }, () => (typeof w.entryBytes === "number" ? w.entryBytes : rng.int(w.entryBytes[0], w.entryBytes[1])));
  const pagesOf = (len: number): number => Math.ceil((offset + len) / PAGE_SIZE);
  const totalPages = sizes.reduce((n, len) => n + pagesOf(len) + gap, 0);
  const base = mem.allocator.allocPages(totalPages);
  const phys: number[] = [];
  let cursor: number = base;
  for (const len of sizes) {
    phys.push(cursor + offset);
    cursor += (pagesOf(len) + gap) * PAGE_SIZE;
  }
  const total = sizes.reduce((a, b) => a + b, 0);
  const expected = new Uint8Array(total);
  let at = 0;
  sizes.forEach((len, i) => {
    const d = pattern(len, (s.seed ?? 1) * 131 + i);
    mem.write(unsafePhysAddr(phys[i] ?? 0), d);
    expected.set(d, at);
    at += len;
  });

  const ep = platform.endpoint(w.device);
  const before = platform.trace.counters.snapshot();
  const out: Outcome = { checks: [], mapped: [], metrics: {} };
  const iterations = w.iterations ?? 1;
  let wrong = 0;
  let failed = 0;
  let segments = 0;
  for (let it = 0; it < iterations; it++) {
    const sgt = sgAllocTable(platform.trace, w.entries);
    sizes.forEach((len, i) => { sgSetPhys(sgt, i, (phys[i] ?? 0) as PhysAddr, len); });
    const rc = dmaMapSgtable(dev, sgt, DmaDirection.TO_DEVICE, 0, { impl: ctx.api === "classic" ? "classic" : "two-step" });
    if (rc !== 0) {
      failed++;
      sgFreeTable(sgt);
      continue;
    }
    segments = sgt.nents;
    let pos = 0;
    let same = true;
    for (const [addr, len] of sgtableDmaSegments(sgt)) {
      const got = ep.dmaRead(unsafeDmaAddr(addr), len);
      for (let k = 0; k < len && same; k++) if (got[k] !== expected[pos + k]) same = false;
      pos += len;
      if (!same) break;
    }
    if (!same || pos !== total) wrong++;
    dmaUnmapSgtable(dev, sgt, DmaDirection.TO_DEVICE);
    sgFreeTable(sgt);
  }
  const sizeText = typeof w.entryBytes === "number" ? `${w.entryBytes.toLocaleString("en-US")} bytes` : `${w.entryBytes[0]}–${w.entryBytes[1]} bytes`;
  out.mapped.push(
    `${iterations} × an sg table of ${w.entries} ${(w.layout ?? "scattered") === "scattered" ? "scattered" : "contiguous"} entries of ${sizeText}${offset > 0 ? ` at offset ${offset}` : ""} for ${w.device}`,
    `dma_map_sgtable ${ctx.api === "classic" ? "as upstream iommu_dma_map_sg (one IOVA, one iommu_map_sg)" : "on the two-step API (dma_iova_try_alloc, a dma_iova_link per contiguous run, one dma_iova_sync)"} → ${segments} DMA segment(s)`,
  );
  out.checks.push(check("mapped", failed === 0, failed === 0 ? `dma_map_sgtable returned 0 ${iterations} time(s)` : `dma_map_sgtable failed ${failed} time(s)`));
  out.checks.push(
    check("device saw the right bytes", wrong === 0, wrong === 0 ? `the DMA segments read back as the ${w.entries} entries in order (${total.toLocaleString("en-US")} bytes)` : `${wrong} of ${iterations} table(s) read back wrong`),
  );
  out.metrics.dmaSegments = segments;
  out.metrics.verifiedBytes = (iterations - wrong - failed) * total;
  return finish(s, ctx, host, [w.device], before, out);
}
