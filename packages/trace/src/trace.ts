import { VirtualClock } from "./clock.js";
import { Counters } from "./counters.js";
import { EventStream } from "./events.js";

/**
 * What every layer of one platform shares: the counters, the virtual clock and the event stream.
 * Hardware and kernel objects take a `Trace` in their constructor rather than reaching for a global,
 * so two platforms in one process never mix their numbers.
 */
export class Trace {
  readonly counters: Counters;
  readonly clock: VirtualClock;
  readonly events: EventStream;

  constructor(options: { clock?: VirtualClock; eventCapacity?: number; recordEvents?: boolean } = {}) {
    this.counters = new Counters();
    this.clock = options.clock ?? new VirtualClock();
    const streamOptions: { capacity?: number; record?: boolean } = {};
    if (options.eventCapacity !== undefined) streamOptions.capacity = options.eventCapacity;
    if (options.recordEvents !== undefined) streamOptions.record = options.recordEvents;
    this.events = new EventStream(streamOptions);
  }
}
