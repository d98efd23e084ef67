import { describe, expect, it } from "vitest";
import { EventStream } from "./events.js";
import { packet as tlp, type DropEvent, type ForeignEvent, type PacketEvent, type TestEvent } from "./test-fixtures.js";
import { Trace } from "./trace.js";
import { TraceInputError } from "./errors.js";

describe("EventStream", () => {
  it("is inactive until someone records or subscribes", () => {
    const s = new EventStream<TestEvent>();
    expect(s.active).toBe(false);
    const off = s.subscribe(() => undefined);
    expect(s.active).toBe(true);
    off();
    expect(s.active).toBe(false);
    s.setRecording(true);
    expect(s.active).toBe(true);
  });

  it("tells onActiveChange watchers each change of active, once, until they stop", () => {
    const s = new EventStream<TestEvent>();
    const seen: boolean[] = [];
    const stop = s.onActiveChange((a) => seen.push(a));
    const off1 = s.subscribe(() => undefined);
    const off2 = s.subscribe(() => undefined);
    off1();
    s.setRecording(true);
    off2();
    s.setRecording(false);
    expect(seen).toEqual([true, false]);
    stop();
    s.subscribe(() => undefined);
    expect([s.active, seen]).toEqual([true, [true, false]]);
  });

  it("delivers to subscribers and records only when recording", () => {
    const s = new EventStream<TestEvent>();
    const got: TestEvent[] = [];
    s.subscribe((e) => got.push(e));
    s.emit(tlp(1));
    expect(got).toHaveLength(1);
    expect(s.events()).toHaveLength(0);
    s.setRecording(true);
    s.emit(tlp(2));
    expect(s.events()).toEqual([tlp(2)]);
  });

  it("keeps the most recent events in a bounded ring and counts drops", () => {
    const s = new EventStream<TestEvent>({ capacity: 3, record: true });
    for (let t = 0; t < 5; t++) s.emit(tlp(t));
    expect(s.events().map((e) => e.t)).toEqual([2, 3, 4]);
    expect(s.dropped).toBe(2);
    s.clear();
    expect(s.events()).toEqual([]);
    expect(s.dropped).toBe(0);
  });

  it("filters by type with the narrowed event shape", () => {
    const s = new EventStream<TestEvent>({ record: true });
    s.emit(tlp(1));
    s.emit({ type: "drop", t: 2, reason: "permission" });
    const drops = s.events("drop");
    expect(drops).toHaveLength(1);
    expect(drops[0]?.reason).toBe("permission");
    expect(s.events("packet").map((e) => e.addr)).toEqual([1]);
  });

  it("carries events of layers the holder does not know; a view widens the type, not the stream", () => {
    const trace = new Trace<TestEvent>({ recordEvents: true });
    const wide = trace.view<TestEvent | ForeignEvent>();
    expect(wide).toBe(trace);
    expect(wide.events.view<TestEvent>()).toBe(trace.events);
    const seen: string[] = [];
    trace.events.subscribe((e) => seen.push(e.type));
    wide.events.emit<ForeignEvent>({ type: "foreign", t: 1, note: "from a layer above" });
    trace.events.emit<PacketEvent>(tlp(2));
    expect(seen).toEqual(["foreign", "packet"]);
    expect(wide.events.events("foreign")).toEqual([{ type: "foreign", t: 1, note: "from a layer above" }]);
    expect(trace.events.events("packet")).toEqual([tlp(2)]);
  });

  it("a plain Trace takes any layer's events (a layer emits its own through the shared stream)", () => {
    const trace = new Trace({ recordEvents: true });
    const holder: Trace = new Trace<TestEvent>();
    trace.events.emit<DropEvent>({ type: "drop", t: 3, reason: "full" });
    expect(trace.events.events()).toEqual([{ type: "drop", t: 3, reason: "full" }]);
    expect(holder.events.events()).toEqual([]);
  });

  it("rejects a capacity that is not a positive integer", () => {
    expect(() => new EventStream<TestEvent>({ capacity: 0 })).toThrow(TraceInputError);
    expect(() => new EventStream<TestEvent>({ capacity: 1.5 })).toThrow(/capacity = 1.5/);
  });

  it("Trace bundles independent counters, clock and events per platform", () => {
    const a = new Trace({ recordEvents: true, eventCapacity: 8 });
    const b = new Trace();
    a.clock.advance(5);
    expect(b.clock.now).toBe(0);
    expect(a.events.capacity).toBe(8);
    expect(a.events.active).toBe(true);
    expect(b.events.active).toBe(false);
  });
});
