// @dmasim/trace: what every layer counts, the virtual time it lives in, the events it reports and the
// seeded fault injection. A layer declares its own counter block and event type; the trace holds only
// the mechanisms. Nothing here reads the wall clock: time moves when the program says so.
import { defineCounters, Trace } from "@dmasim/trace";

// A layer's own counters (a fixed block of slots it owns) and its own event.
const Counter = defineCounters(120, ["FlushQueueFlushes", "IotlbInvalidations"]);
interface FlushEvent {
  readonly type: "fq.flush";
  readonly t: number;
  readonly entries: number;
}

const trace = new Trace<FlushEvent>({ recordEvents: true });
trace.counters.declare(Counter); // what a layer's constructor does

// A lazy flush queue: 3 unmaps queued now, flushed by a 10 ms timer on the virtual clock.
const before = trace.counters.snapshot();
trace.clock.setTimer(10_000_000, () => {
  trace.counters.add(Counter.FlushQueueFlushes);
  trace.counters.add(Counter.IotlbInvalidations, 3);
  trace.events.emit<FlushEvent>({ type: "fq.flush", t: trace.clock.now, entries: 3 });
});
trace.clock.advance(5_000_000);
console.log(`t = ${trace.clock.now} ns: ${JSON.stringify(trace.counters.snapshot().diff(before).nonZero())}`);
trace.clock.advance(5_000_000);
console.log(`t = ${trace.clock.now} ns: ${JSON.stringify(trace.counters.snapshot().diff(before).nonZero())}`);
console.log(`events: ${JSON.stringify(trace.events.events("fq.flush"))}`);

// Fault injection (lib/fault-inject.c): a site that fails every 3rd call, 2 times in all.
const site = trace.faults.attr("fail_iova");
site.configure({ probability: 100, interval: 3, times: 2 });
const calls = Array.from({ length: 9 }, () => (site.shouldFail(4096) ? "F" : "."));
console.log(`fail_iova over 9 calls: ${calls.join("")}`);
// Output:
// t = 5000000 ns: {}
// t = 10000000 ns: {"FlushQueueFlushes":1,"IotlbInvalidations":3}
// events: [{"type":"fq.flush","t":10000000,"entries":3}]
// fail_iova over 9 calls: ..F..F...
