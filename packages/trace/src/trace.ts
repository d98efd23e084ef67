import { VirtualClock } from "./clock.js";
import { Counters } from "./counters.js";
import { EventStream, type TraceEventBase } from "./events.js";
import { FaultInjection } from "./fault-inject.js";

/**
 * What every layer of one platform shares: the counters, the virtual clock, the event stream and the
 * fault-injection sites.
 * Hardware and kernel objects take a `Trace` in their constructor rather than reaching for a global,
 * so two platforms in one process never mix their numbers.
 *
 * `E` is the union of events the holder knows (see `EventStream`): a layer takes a plain `Trace` and
 * emits its own events; the object that builds a platform or a kernel types it with the union of the layers
 * it knows (`Platform.trace`, `DmaKernel.trace`), so readers of `trace.events` get typed events.
 */
export class Trace<E extends TraceEventBase = TraceEventBase> {
  /** The platform's counters; every layer declares its block here. */
  readonly counters: Counters;
  /** The platform's virtual clock (ns); shared with every layer so timers and event times agree. */
  readonly clock: VirtualClock;
  /** The platform's event stream, typed with the union of events the holder knows. */
  readonly events: EventStream<E>;
  /** Fault-injection sites (all unarmed until configured): the kernel's fail_* debugfs attributes. */
  readonly faults: FaultInjection;

  constructor(options: { clock?: VirtualClock; eventCapacity?: number; recordEvents?: boolean } = {}) {
    this.counters = new Counters();
    this.clock = options.clock ?? new VirtualClock();
    const streamOptions: { capacity?: number; record?: boolean } = {};
    if (options.eventCapacity !== undefined) streamOptions.capacity = options.eventCapacity;
    if (options.recordEvents !== undefined) streamOptions.record = options.recordEvents;
    this.events = new EventStream<E>(streamOptions);
    this.faults = new FaultInjection();
  }

  /** This trace with its events typed as `F` (the same object: see `EventStream.view`). */
  view<F extends TraceEventBase>(): Trace<F> {
    return this as unknown as Trace<F>;
  }
}
