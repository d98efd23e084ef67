import type { DmaDevice } from "@dmasim/dma";

/**
 * Wraps a call the packages below do not trace themselves (dma_map_sgtable / dma_unmap_sgtable of
 * @dmasim/scatterlist, whose classic path calls iommu-dma internals rather than the traced API) in an
 * "api" slice, so a Chrome trace shows it; the two-step path's dma_iova_* calls nest inside it.
 */
export function apiSlice<T extends number | undefined>(dev: DmaDevice, name: string, call: () => T): T {
  const events = dev.kernel.trace.events;
  if (!events.active) return call();
  const clock = dev.kernel.trace.clock;
  events.emit({ type: "api", t: clock.now, phase: "B", name, device: dev.bdf });
  const result = call();
  events.emit({ type: "api", t: clock.now, phase: "E", name, device: dev.bdf, ...(result === undefined ? {} : { result }) });
  return result;
}
