import { DmaDevice } from "./device.js";
import { DmaInputError } from "./errors.js";
import type { DmaApiEvent, DmaEvent } from "./events.js";

// DMA API calls as trace slices: "B" when a call starts, "E" with its result when it returns. Built only
// when someone listens, so an untraced run allocates nothing here.

export function apiBegin(dev: DmaDevice, name: string): void {
  const trace = dev.kernel.trace;
  if (trace.events.active) trace.events.emit<DmaEvent>({ type: "api", t: trace.clock.now, phase: "B", name, device: dev.bdf });
}

export function apiEnd(dev: DmaDevice, name: string, result: number): void {
  const trace = dev.kernel.trace;
  if (trace.events.active) trace.events.emit<DmaEvent>({ type: "api", t: trace.clock.now, phase: "E", name, device: dev.bdf, result });
}

/**
 * Every API call starts here: a device must be one the kernel handed out and still bound. Anything else
 * (undefined, a BDF string, an Endpoint, a look-alike object) is bad input, named as such, never a
 * TypeError from inside the model.
 */
export function checkDevice(fn: string, dev: unknown): asserts dev is DmaDevice {
  if (!(dev instanceof DmaDevice)) throw new DmaInputError(fn, "dev", dev, "a DmaDevice from kernel.device(bdf)");
  if (!dev.bound) throw new DmaInputError(fn, "dev", dev.bdf, "a bound device: this one was unbound; look it up again with kernel.device()");
}

/**
 * Runs `call` as one DMA API call in the trace: a "B" event before and an "E" event with its result
 * after. For packages that implement kernel DMA API entry points on top of this one (dma_map_sg,
 * blk_rq_dma_map_iter_start, …), so a trace shows their calls with the dma_iova_* calls nested inside.
 * One boolean read when nobody listens.
 */
export function dmaApiSlice<T extends number | boolean | undefined>(dev: DmaDevice, name: string, call: () => T): T {
  const trace = dev.kernel.trace;
  if (!trace.events.active) return call();
  trace.events.emit<DmaEvent>({ type: "api", t: trace.clock.now, phase: "B", name, device: dev.bdf });
  const result = call();
  const end: DmaApiEvent =
    result === undefined
      ? { type: "api", t: trace.clock.now, phase: "E", name, device: dev.bdf }
      : { type: "api", t: trace.clock.now, phase: "E", name, device: dev.bdf, result: typeof result === "boolean" ? (result ? 1 : 0) : result };
  trace.events.emit<DmaEvent>(end);
  return result;
}
