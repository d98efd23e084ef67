import { describe, expect, it } from "vitest";
import { EventStream } from "./events.js";
import type { TraceEvent } from "./events.js";
import { Trace } from "./trace.js";
import { TraceInputError } from "./errors.js";

const tlp = (t: number): TraceEvent => ({ type: "tlp", t, device: "0000:01:00.0", path: "memory", access: "read", addr: t, len: 64 });

describe("EventStream", () => {
  it("is inactive until someone records or subscribes", () => {
    const s = new EventStream();
    expect(s.active).toBe(false);
    const off = s.subscribe(() => undefined);
    expect(s.active).toBe(true);
    off();
    expect(s.active).toBe(false);
    s.setRecording(true);
    expect(s.active).toBe(true);
  });

  it("delivers to subscribers and records only when recording", () => {
    const s = new EventStream();
    const got: TraceEvent[] = [];
    s.subscribe((e) => got.push(e));
    s.emit(tlp(1));
    expect(got).toHaveLength(1);
    expect(s.events()).toHaveLength(0);
    s.setRecording(true);
    s.emit(tlp(2));
    expect(s.events()).toEqual([tlp(2)]);
  });

  it("keeps the most recent events in a bounded ring and counts drops", () => {
    const s = new EventStream({ capacity: 3, record: true });
    for (let t = 0; t < 5; t++) s.emit(tlp(t));
    expect(s.events().map((e) => e.t)).toEqual([2, 3, 4]);
    expect(s.dropped).toBe(2);
    s.clear();
    expect(s.events()).toEqual([]);
    expect(s.dropped).toBe(0);
  });

  it("filters by type with the narrowed event shape", () => {
    const s = new EventStream({ record: true });
    s.emit(tlp(1));
    s.emit({ type: "iommu.fault", t: 2, unit: "iommu0", device: "d", iova: 4096, access: "write", reason: "permission" });
    const faults = s.events("iommu.fault");
    expect(faults).toHaveLength(1);
    expect(faults[0]?.reason).toBe("permission");
  });

  it("rejects a capacity that is not a positive integer", () => {
    expect(() => new EventStream({ capacity: 0 })).toThrow(TraceInputError);
    expect(() => new EventStream({ capacity: 1.5 })).toThrow(/capacity = 1.5/);
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
