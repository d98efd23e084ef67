import { DmaDirection, DmaIovaState, dmaIovaDestroy, dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc, dmaMapPhys, dmaMappingError, dmaUnmapPhys, IOVA_FQ_TIMEOUT_NS, unsafeDmaAddr } from "@dmasim/dma";
import { PAGE_SIZE } from "@dmasim/memory";
import { PcieAccessError } from "@dmasim/pcie-p2p";
import type { Scenario, StaleWindowWorkload } from "../types.js";
import { equal, finish, pattern } from "./finish.js";
import type { Outcome } from "./finish.js";
import { createHost, setUp } from "./host.js";
import { check } from "./result.js";
import type { RunContext } from "./context.js";
import type { RunResult } from "./result.js";

/**
 * How long a device can still use an address after the driver unmapped it. Strict mode invalidates the
 * IOTLB before the unmap returns; lazy mode hands the IOVA to the flush queue and the IOTLB keeps the
 * old translation until the queue's timeout (IOVA_FQ_TIMEOUT, 10 ms) or a full ring forces a global
 * flush (drivers/iommu/dma-iommu.c). The device probes the old address at a fixed virtual-time interval.
 */
export function runStaleWindow(s: Scenario, w: StaleWindowWorkload, ctx: RunContext): RunResult {
  const host = createHost(s, ctx);
  const { platform, kernel } = host;
  const dev = setUp(`workload.device of scenario "${s.name}"`, () => kernel.device(w.device));
  ctx.onHost?.(`${s.name} ${ctx.api}/${ctx.iommu}`, host);
  const bytes = w.bytes ?? PAGE_SIZE;
  const interval = w.probeIntervalNs ?? 100_000;
  const probeFor = w.probeForNs ?? 20_000_000;
  const mem = platform.memory;
  const phys = mem.allocator.allocPages(Math.ceil(bytes / PAGE_SIZE));
  const data = pattern(bytes, s.seed ?? 1);
  mem.write(phys, data);
  const ep = platform.endpoint(w.device);
  const before = platform.trace.counters.snapshot();
  const out: Outcome = { checks: [], mapped: [], metrics: {} };
  const dir = DmaDirection.TO_DEVICE;
  const probeLen = Math.min(64, bytes);

  let addr = 0;
  let unmap = (): void => {
    dmaUnmapPhys(dev, unsafeDmaAddr(addr), bytes, dir, 0);
  };
  const state = new DmaIovaState();
  if (ctx.api === "classic" || !dmaIovaTryAlloc(dev, state, phys, bytes)) {
    addr = dmaMapPhys(dev, phys, bytes, dir, 0);
    out.mapped.push(
      ctx.api === "classic"
        ? `${bytes.toLocaleString("en-US")} bytes mapped with dma_map_phys, read by ${w.device}, then dma_unmap_phys`
        : `dma_iova_try_alloc → false (no iommu-dma domain): ${bytes.toLocaleString("en-US")} bytes mapped with dma_map_phys instead`,
    );
    if (dmaMappingError(dev, unsafeDmaAddr(addr)) !== 0) {
      out.checks.push(check("mapped", false, "dma_map_phys returned DMA_MAPPING_ERROR"));
      return finish(s, ctx, host, [w.device], before, out);
    }
  } else {
    dmaIovaLink(dev, state, phys, 0, bytes, dir, 0);
    dmaIovaSync(dev, state, 0, bytes);
    addr = state.addr;
    unmap = () => {
      dmaIovaDestroy(dev, state, bytes, dir, 0);
    };
    out.mapped.push(`${bytes.toLocaleString("en-US")} bytes mapped with dma_iova_try_alloc/link/sync, read by ${w.device}, then dma_iova_destroy`);
  }
  const sawBytes = equal(ep.dmaRead(unsafeDmaAddr(addr), bytes), data);
  out.checks.push(check("device saw the right bytes", sawBytes, sawBytes ? "read back identical while mapped" : "the device read different bytes"));

  const unmappedAt = platform.trace.clock.now;
  unmap();
  // After the unmap the device keeps reading the old address; every read that succeeds is a read of
  // memory the driver already gave back.
  let staleReads = 0;
  let lastStale = -1;
  let closed = false;
  for (let t = 0; t <= probeFor; t += interval) {
    try {
      ep.dmaRead(unsafeDmaAddr(addr), probeLen);
      staleReads++;
      lastStale = platform.trace.clock.now - unmappedAt;
    } catch (e) {
      if (!(e instanceof PcieAccessError)) throw e;
      closed = true;
      break;
    }
    platform.trace.clock.advance(interval);
  }
  // The probes' faults were provoked on purpose: they are the measurement, not a failure.
  for (const unit of platform.iommus) unit.clearFaults();
  const windowNs = staleReads === 0 ? 0 : lastStale + interval;
  out.metrics.staleReads = staleReads;
  out.metrics.windowNs = windowNs;
  const translated = dev.domain?.type === "paging";
  if (!translated) {
    out.checks.push(check("no translation to revoke", true, "without an IOMMU paging domain the device uses physical addresses: nothing stops it after the unmap"));
  } else if (ctx.iommu === "lazy") {
    out.checks.push(
      check(
        "stale window closes within the flush-queue timeout",
        closed && windowNs <= IOVA_FQ_TIMEOUT_NS + interval,
        closed ? `${staleReads} stale read(s) succeeded over ${(windowNs / 1e6).toFixed(1)} ms, then the flush queue invalidated the IOTLB` : `still translating after ${(probeFor / 1e6).toFixed(1)} ms`,
      ),
    );
  } else {
    out.checks.push(check("no stale window", staleReads === 0 && closed, staleReads === 0 ? "the first read after the unmap faulted: the IOTLB was invalidated before the unmap returned" : `${staleReads} read(s) still succeeded`));
  }
  return finish(s, ctx, host, [w.device], before, out);
}
