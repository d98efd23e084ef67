import { Trace } from "@dmasim/trace";
import { Counter } from "../counters.js";
import { describe, expect, it } from "vitest";
import { IOVA_FQ_SIZE, IOVA_FQ_TIMEOUT_NS } from "./constants.js";
import { IovaDomain } from "./domain.js";
import { IovaError } from "./errors.js";
import { FlushQueue } from "./flush-queue.js";

function setup(cpus = 2) {
  const trace = new Trace({ recordEvents: true });
  const iovad = new IovaDomain(trace, { granule: 4096, startPfn: 1, cpus });
  const log: string[] = [];
  const released: unknown[] = [];
  const fq = new FlushQueue(trace, iovad, {
    flushIotlbAll: () => log.push("flush"),
    releasePtPages: (l) => released.push(l),
  });
  return { trace, iovad, fq, log, released };
}

describe("FlushQueue", () => {
  it("holds an entry until a flush that started after it has finished", () => {
    const { trace, iovad, fq, log, released } = setup();
    const pfn = iovad.allocIovaFast(1, 1000, true, 0);
    fq.queueIova(pfn, 1, "pt-pages-A", 0);
    expect(fq.pending(0)).toBe(1);
    expect(iovad.cachedPfns(0)).toBe(0);
    expect(released).toEqual([]);
    expect(fq.timerDeadline).toBe(IOVA_FQ_TIMEOUT_NS);
    trace.clock.advance(IOVA_FQ_TIMEOUT_NS - 1);
    expect(fq.pending(0)).toBe(1);
    trace.clock.advance(1);
    expect(log).toEqual(["flush"]);
    expect(fq.pending(0)).toBe(0);
    expect(released).toEqual(["pt-pages-A"]);
    expect(iovad.cachedPfns(0)).toBe(1); // back through free_iova_fast
    expect(fq.timerDeadline).toBeUndefined();
    expect(trace.counters.get(Counter.FlushQueueEntries)).toBe(1);
    expect(trace.counters.get(Counter.FlushQueueFlushes)).toBe(1);
    expect(trace.events.events("flush-queue.flush")).toEqual([
      { type: "flush-queue.flush", t: IOVA_FQ_TIMEOUT_NS, cpu: 0, pending: 0, entries: 1, reason: "timeout" },
    ]);
  });

  it("the timer is armed once, by the first entry, and re-armed by the next entry after it fired", () => {
    const { trace, iovad, fq } = setup();
    fq.queueIova(iovad.allocIovaFast(1, 1000, true, 0), 1, undefined, 0);
    trace.clock.advance(5_000_000);
    fq.queueIova(iovad.allocIovaFast(1, 1000, true, 1), 1, undefined, 1);
    expect(fq.timerDeadline).toBe(IOVA_FQ_TIMEOUT_NS);
    trace.clock.advance(5_000_000);
    expect(fq.pendingTotal).toBe(0);
    fq.queueIova(iovad.allocIovaFast(1, 1000, true, 0), 1, undefined, 0);
    expect(fq.timerDeadline).toBe(2 * IOVA_FQ_TIMEOUT_NS);
  });

  it("a full ring (255 entries) forces a flush before the 256th entry is queued", () => {
    const { trace, iovad, fq, log } = setup(1);
    for (let i = 0; i < IOVA_FQ_SIZE - 1; i++) fq.queueIova(iovad.allocIovaFast(1, 10_000, true, 0), 1, undefined, 0);
    expect(log).toEqual([]);
    expect(fq.pending(0)).toBe(255);
    fq.queueIova(iovad.allocIovaFast(1, 10_000, true, 0), 1, undefined, 0);
    expect(log).toEqual(["flush"]);
    expect(fq.pending(0)).toBe(1);
    expect(trace.counters.get(Counter.FlushQueueFullFlushes)).toBe(1);
    expect(trace.events.events("flush-queue.flush")[0]).toMatchObject({ reason: "full", entries: 255 });
  });

  it("an entry queued on one CPU after a flush waits for the next one, entries before it are released lazily", () => {
    const { iovad, fq, log } = setup(1);
    const a = iovad.allocIovaFast(1, 1000, true, 0);
    fq.queueIova(a, 1, undefined, 0);
    expect(fq.flushStartCount).toBe(0);
    fq.flushNow();
    expect(log).toHaveLength(1);
    const b = iovad.allocIovaFast(1, 1000, true, 0);
    expect(b).toBe(a); // released to the cache by flushNow, reused
    fq.queueIova(b, 1, undefined, 0);
    expect(fq.pending(0)).toBe(1);
  });

  it("flushNow releases every ring and disarms the timer", () => {
    const { trace, iovad, fq, released } = setup(2);
    fq.queueIova(iovad.allocIovaFast(2, 1000, true, 0), 2, "x", 0);
    fq.queueIova(iovad.allocIovaFast(64, 1000, true, 1), 64, "y", 1);
    fq.flushNow();
    expect(fq.pendingTotal).toBe(0);
    expect(released).toEqual(["x", "y"]);
    expect(iovad.liveRanges).toBe(1); // the 2-page range is cached; the 64-page one went to the tree
    expect(trace.clock.pendingTimers()).toBe(0);
    expect(fq.timerDeadline).toBeUndefined();
  });

  it("rejects bad input and leaves the queue unchanged", () => {
    const { iovad, fq } = setup(2);
    expect(() => { fq.queueIova(0, 1, undefined, 0); }).toThrow(IovaError);
    expect(() => { fq.queueIova(5, 0, undefined, 0); }).toThrow(/pages = 0/);
    expect(() => { fq.queueIova(5, 1, undefined, 2); }).toThrow(/cpu = 0x2/);
    expect(() => fq.pending(-1)).toThrow(IovaError);
    expect(fq.pendingTotal).toBe(0);
    expect(fq.timerDeadline).toBeUndefined();
    const ops = { flushIotlbAll: () => undefined, releasePtPages: () => undefined };
    expect(() => new FlushQueue(new Trace(), iovad, ops, { size: 100 })).toThrow(/size = 0x64/);
    expect(() => new FlushQueue(new Trace(), iovad, ops, { timeoutNs: 0 })).toThrow(/timeoutNs/);
  });
});
