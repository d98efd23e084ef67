import { bench, describe } from "vitest";
import { Counters, defineCounters } from "./counters.js";

const Counter = defineCounters(8, ["PteWrites", "IotlbHits"]);
import { EventStream } from "./events.js";
import type { TestEvent } from "./test-fixtures.js";

describe("counters and events on a hot path", () => {
  const counters = new Counters();
  bench("Counters.add (one typed-array store)", () => {
    counters.add(Counter.PteWrites);
  });

  const quiet = new EventStream<TestEvent>();
  bench("event site with nobody listening (one boolean read)", () => {
    if (quiet.active) quiet.emit({ type: "packet", t: 0, device: "d", addr: 0, len: 64 });
  });

  const recording = new EventStream<TestEvent>({ capacity: 4096, record: true });
  bench("event emitted into a recording ring", () => {
    if (recording.active) recording.emit({ type: "packet", t: 0, device: "d", addr: 0, len: 64 });
  });

  bench("snapshot + diff of every counter", () => {
    const a = counters.snapshot();
    counters.add(Counter.IotlbHits, 3);
    counters.snapshot().diff(a);
  });
});
