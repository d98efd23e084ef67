// The README's example, read from README.md and run as written.
import { expect, it } from "vitest";
import { runReadmeBlock } from "../../../scripts/readme-example.js";
import * as traceModule from "./index.js";
import type { CounterSnapshot, Trace } from "./index.js";

it("README example: a timer fires at t = 10 ms, the diff shows both counters, the layer's own event is recorded", () => {
  const r = runReadmeBlock(new URL("../README.md", import.meta.url), { "@dmasim/trace": traceModule });
  const trace = r.trace as Trace;
  expect(trace.clock.now).toBe(10_000_000);
  expect(trace.counters.snapshot().diff(r.before as CounterSnapshot).nonZero()).toEqual({ IotlbMisses: 1, FlushQueueFlushes: 1 });
  expect(r.flushed).toEqual([{ type: "flush", t: 10_000_000, entries: 3 }]);
});
