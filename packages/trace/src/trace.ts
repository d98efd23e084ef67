import { VirtualClock } from "./clock.js";
import { Counters } from "./counters.js";
import { EventStream } from "./events.js";
import { FaultInjection } from "./fault-inject.js";

/**
 * What every layer of one platform shares: the counters, the virtual clock, the event stream and the
 * fault-injection sites.
 * Hardware and kernel objects take a `Trace` in their constructor rather than reaching for a global,
 * so two platforms in one process never mix their numbers.
 */
export class Trace {
  readonly counters: Counters;
  readonly clock: VirtualClock;
  readonly events: EventStream;
  /** Fault-injection sites (all unarmed until configured): the kernel's fail_* debugfs attributes. */
  readonly faults: FaultInjection;

  constructor(options: { clock?: VirtualClock; eventCapacity?: number; recordEvents?: boolean } = {}) {
    this.counters = new Counters();
    this.clock = options.clock ?? new VirtualClock();
    const streamOptions: { capacity?: number; record?: boolean } = {};
    if (options.eventCapacity !== undefined) streamOptions.capacity = options.eventCapacity;
    if (options.recordEvents !== undefined) streamOptions.record = options.recordEvents;
    this.events = new EventStream(streamOptions);
    this.faults = new FaultInjection();
  }
}
