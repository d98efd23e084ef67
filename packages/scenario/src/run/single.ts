import {
  DmaDirection,
  DmaIovaState,
  dmaIovaDestroy,
  dmaIovaLink,
  dmaIovaSync,
  dmaIovaTryAlloc,
  dmaMapPhys,
  dmaMappingError,
  dmaUnmapPhys,
  unsafeDmaAddr,
} from "@dmasim/dma";
import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import type { Scenario, SingleWorkload } from "../types.js";
import { equal, finish, pattern } from "./finish.js";
import type { Outcome } from "./finish.js";
import { createHost, setUp } from "./host.js";
import { check } from "./result.js";
import type { RunContext } from "./context.js";
import type { RunResult } from "./result.js";
import type { PhysAddr } from "@dmasim/memory";

interface Buffer {
  readonly phys: number;
  readonly data: Uint8Array;
}

/**
 * N buffers handed to the device. classic: one dma_map_phys each (kernel/dma/mapping.c), so one IOVA,
 * one iommu_map and one IOTLB sync per buffer. two-step: dma_iova_try_alloc once for all of them (or
 * once per buffer), a dma_iova_link per buffer and one dma_iova_sync; when there is no iommu-dma domain
 * dma_iova_try_alloc says no and the driver falls back to dma_map_phys, as real drivers do.
 */
export function runSingle(s: Scenario, w: SingleWorkload, ctx: RunContext): RunResult {
  const host = createHost(s, ctx);
  const { platform, kernel } = host;
  const dev = setUp(`workload.device of scenario "${s.name}"`, () => kernel.device(w.device));
  ctx.onHost?.(`${s.name} ${ctx.api}/${ctx.iommu}`, host);
  const mem = platform.memory;
  const offset = w.offset ?? 0;
  const pages = Math.ceil((offset + w.bytes) / PAGE_SIZE);
  const seed = s.seed ?? 1;
  // Each buffer gets its own pages with a free page after them, so nothing is physically contiguous.
  const base = mem.allocator.allocPages(w.buffers * (pages + 1));
  const buffers: Buffer[] = [];
  for (let i = 0; i < w.buffers; i++) {
    const phys = base + i * (pages + 1) * PAGE_SIZE + offset;
    // Kernel data sharing the first page with the buffer: an untrusted device must never see it.
    if (offset > 0) mem.fill(unsafePhysAddr(phys - offset), offset, 0xee);
    const data = pattern(w.bytes, seed * 7919 + i);
    mem.write(unsafePhysAddr(phys), data);
    buffers.push({ phys, data });
  }
  const before = platform.trace.counters.snapshot();
  const out: Outcome = { checks: [], mapped: [], metrics: {} };
  let wrong = 0;
  let leakedHead = 0;
  const path = { fellBack: false };
  const ep = platform.endpoint(w.device);
  const verify = (addr: number, b: Buffer): void => {
    if (!equal(ep.dmaRead(unsafeDmaAddr(addr), b.data.length), b.data)) wrong++;
    // What lies before the buffer in its IOVA granule: zeros when it bounced, the buffer's neighbour otherwise.
    if (offset > 0 && dev.endpoint.untrusted && dev.domain?.type === "paging") {
      if (ep.dmaRead(unsafeDmaAddr(addr - offset), offset).some((x) => x !== 0)) leakedHead++;
    }
  };
  const dir = DmaDirection.TO_DEVICE;

  const classic = (list: readonly Buffer[]): void => {
    for (const b of list) {
      const addr = dmaMapPhys(dev, unsafePhysAddr(b.phys), w.bytes, dir, 0);
      if (dmaMappingError(dev, addr) !== 0) {
        wrong++;
        continue;
      }
      verify(addr, b);
      dmaUnmapPhys(dev, addr, w.bytes, dir, 0);
    }
  };

  const twoStep = (list: readonly Buffer[]): void => {
    const first = list[0];
    if (first === undefined) return;
    const total = list.length * w.bytes;
    const state = new DmaIovaState();
    if (!dmaIovaTryAlloc(dev, state, first.phys as PhysAddr, total)) {
      path.fellBack = true;
      classic(list);
      return;
    }
    let linked = 0;
    for (const b of list) {
      if (dmaIovaLink(dev, state, unsafePhysAddr(b.phys), linked, w.bytes, dir, 0) !== 0) break;
      linked += w.bytes;
    }
    if (linked > 0 && dmaIovaSync(dev, state, 0, linked) !== 0) wrong++;
    list.forEach((b, i) => {
      if (i * w.bytes < linked) verify(state.addr + i * w.bytes, b);
      else wrong++;
    });
    dmaIovaDestroy(dev, state, linked, dir, 0);
  };

  if (ctx.api === "classic") classic(buffers);
  else if ((w.iova ?? "shared") === "shared") twoStep(buffers);
  else for (const b of buffers) twoStep([b]);

  const how =
    ctx.api === "classic"
      ? `dma_map_phys + dma_unmap_phys per buffer`
      : path.fellBack
        ? "dma_iova_try_alloc → false (no iommu-dma domain): fell back to dma_map_phys per buffer"
        : (w.iova ?? "shared") === "shared"
          ? `one dma_iova_try_alloc for all ${w.buffers}, a dma_iova_link per buffer, one dma_iova_sync, one dma_iova_destroy`
          : "dma_iova_try_alloc + dma_iova_link + dma_iova_sync + dma_iova_destroy per buffer";
  out.mapped.push(`${w.buffers} buffer(s) of ${w.bytes.toLocaleString("en-US")} bytes${offset > 0 ? ` starting ${offset} bytes into a page` : ""} for ${w.device}: ${how}`);
  out.checks.push(check("device saw the right bytes", wrong === 0, wrong === 0 ? `all ${w.buffers} buffer(s) read back identical` : `${wrong} buffer(s) differed or failed to map`));
  if (offset > 0 && dev.endpoint.untrusted && dev.domain?.type === "paging") {
    out.checks.push(check("no neighbouring data exposed", leakedHead === 0, leakedHead === 0 ? "the bytes before each buffer in its granule read as zeros (bounce padding cleared)" : `${leakedHead} buffer(s) exposed the data next to them`));
  }
  out.metrics.verifiedBytes = (w.buffers - wrong) * w.bytes;
  out.metrics.bouncedBytes = 0;
  const result = finish(s, ctx, host, [w.device], before, out);
  out.metrics.bouncedBytes = result.counters.SwiotlbBounceBytes ?? 0;
  return result;
}
