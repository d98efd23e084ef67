import { describe, expect, it } from "vitest";
import { EventStream } from "./events.js";
import { packet as tlp, type TestEvent } from "./test-fixtures.js";

// A subscriber may change the subscriber list while it is being called (a tracer that stops itself after
// N events, one that attaches a second tracer, one that emits): every other subscriber still gets each
// event exactly once.
describe("EventStream subscribers changed during a dispatch", () => {
  it("a subscriber that unsubscribes itself does not make the next one miss the event", () => {
    const s = new EventStream<TestEvent>();
    const seen: string[] = [];
    const offA = s.subscribe((e) => {
      seen.push(`a${e.t}`);
      offA();
    });
    s.subscribe((e) => seen.push(`b${e.t}`));
    s.subscribe((e) => seen.push(`c${e.t}`));
    s.emit(tlp(1));
    s.emit(tlp(2));
    expect(seen).toEqual(["a1", "b1", "c1", "b2", "c2"]);
  });

  it("a subscriber cancelled by an earlier one during a dispatch is not called for that event", () => {
    const s = new EventStream<TestEvent>();
    const seen: string[] = [];
    let offB = (): void => undefined;
    s.subscribe((e) => {
      seen.push(`a${e.t}`);
      offB();
    });
    offB = s.subscribe((e) => seen.push(`b${e.t}`));
    s.emit(tlp(1));
    expect(seen).toEqual(["a1"]);
    expect(s.active).toBe(true);
  });

  it("a subscriber added during a dispatch starts with the next event", () => {
    const s = new EventStream<TestEvent>();
    const seen: string[] = [];
    let added = false;
    s.subscribe((e) => {
      seen.push(`a${e.t}`);
      if (!added) {
        added = true;
        s.subscribe((f) => seen.push(`late${f.t}`));
      }
    });
    s.emit(tlp(1));
    s.emit(tlp(2));
    expect(seen).toEqual(["a1", "a2", "late2"]);
  });

  it("an event emitted from inside a subscriber reaches every subscriber, and the outer dispatch carries on", () => {
    const s = new EventStream<TestEvent>();
    const seen: string[] = [];
    s.subscribe((e) => {
      seen.push(`a${e.t}`);
      if (e.t === 1) s.emit(tlp(10));
    });
    s.subscribe((e) => seen.push(`b${e.t}`));
    s.emit(tlp(1));
    expect(seen).toEqual(["a1", "a10", "b10", "b1"]);
  });

  it("unsubscribing twice, or the same function subscribed twice, removes exactly one subscription each", () => {
    const s = new EventStream<TestEvent>();
    let n = 0;
    const fn = (): void => {
      n++;
    };
    const off1 = s.subscribe(fn);
    s.subscribe(fn);
    off1();
    off1();
    s.emit(tlp(1));
    expect(n).toBe(1);
  });
});
