import { priceCounters } from "@dmasim/dma";
import { hex } from "@dmasim/trace";
import { Counter } from "@dmasim/dma";
import type { CounterSnapshot } from "@dmasim/trace";
import type { Host, RunLogEvent } from "@dmasim/scenario";

/** One event of the Chrome trace event format (the JSON Perfetto and chrome://tracing load). */
export interface ChromeEvent {
  readonly ph: "B" | "E" | "C" | "M" | "i";
  readonly name: string;
  readonly pid: number;
  readonly tid: number;
  /** Microseconds. */
  readonly ts: number;
  readonly cat?: string;
  readonly s?: "t" | "p" | "g";
  readonly args?: Readonly<Record<string, number | string>>;
}

export interface ChromeTrace {
  readonly traceEvents: readonly ChromeEvent[];
  readonly displayTimeUnit: "ns";
}

/** Counter tracks: a name and the counters drawn on it. */
const TRACKS: readonly (readonly [string, readonly (readonly [string, Counter])[]])[] = [
  ["IO page table", [["PTE writes", Counter.PteWrites], ["PTE clears", Counter.PteClears]]],
  ["IOTLB", [["sync_map", Counter.IotlbSyncMap], ["range invalidations", Counter.IotlbInvalRange], ["global flushes", Counter.IotlbInvalGlobal]]],
  ["IOVA allocations", [["from cache", Counter.IovaAllocCache], ["from tree", Counter.IovaAllocTree]]],
  ["swiotlb bytes bounced", [["bytes", Counter.SwiotlbBounceBytes]]],
  ["flush queue entries", [["entries", Counter.FlushQueueEntries]]],
];

/**
 * Records the runs of a command as a Chrome trace. Each run is a process (named after the scenario,
 * API and IOMMU mode), each device a thread; DMA API calls are B/E slices (the "api" events of
 * @dmasim/trace), counters are "C" tracks, IOMMU faults, bounces and flush-queue flushes are instants.
 *
 * The model's virtual clock only moves when something waits (a flush-queue timeout, a probe interval),
 * so timestamps are virtual time plus the modelled cost of the work done so far: each API event moves
 * the time on by the priced counters that changed since the previous one. Slices then have the width
 * the cost profile gives them.
 */
export class ChromeTraceRecorder {
  readonly #events: ChromeEvent[] = [];
  #nextPid = 1;
  readonly #detach: (() => void)[] = [];

  attach(label: string, host: Host): void {
    const pid = this.#nextPid++;
    const { platform, kernel } = host;
    const trace = platform.trace;
    const events = this.#events;
    events.push({ ph: "M", name: "process_name", pid, tid: 0, ts: 0, args: { name: label } });
    events.push({ ph: "M", name: "process_sort_index", pid, tid: 0, ts: 0, args: { sort_index: pid } });
    const tids = new Map<string, number>();
    const tidOf = (device: string): number => {
      let tid = tids.get(device);
      if (tid === undefined) {
        tid = tids.size + 1;
        tids.set(device, tid);
        events.push({ ph: "M", name: "thread_name", pid, tid, ts: 0, args: { name: device } });
      }
      return tid;
    };
    let last: CounterSnapshot = trace.counters.snapshot();
    const origin = last;
    let modelledNs = 0;
    const shown = new Map<string, string>();
    const ts = (t: number): number => (t + modelledNs) / 1000;
    const counterTracks = (at: number): void => {
      const moved = last.diff(origin);
      for (const [name, series] of TRACKS) {
        const args: Record<string, number> = {};
        for (const [label, c] of series) args[label] = moved.get(c);
        const key = JSON.stringify(args);
        if (shown.get(name) === key) continue;
        shown.set(name, key);
        events.push({ ph: "C", name, pid, tid: 0, ts: at, args });
      }
    };
    const onEvent = (e: RunLogEvent): void => {
      switch (e.type) {
        case "api": {
          const now = trace.counters.snapshot();
          modelledNs += priceCounters(now.diff(last), kernel.profile).totalNs;
          last = now;
          const at = ts(e.t);
          events.push({
            ph: e.phase,
            name: e.name,
            cat: "dma-api",
            pid,
            tid: tidOf(e.device),
            ts: at,
            ...(e.phase === "E" && e.result !== undefined ? { args: { result: e.result } } : {}),
          });
          if (e.phase === "E") counterTracks(at);
          return;
        }
        case "iommu.fault":
          events.push({ ph: "i", s: "t", name: `IOMMU fault (${e.reason})`, cat: "iommu", pid, tid: tidOf(e.device), ts: ts(e.t), args: { iova: hex(e.iova), access: e.access } });
          return;
        case "swiotlb.bounce":
          events.push({ ph: "i", s: "t", name: "swiotlb bounce", cat: "swiotlb", pid, tid: tidOf(e.device), ts: ts(e.t), args: { bytes: e.len, toDevice: String(e.toDevice) } });
          return;
        case "flush-queue.flush":
          events.push({ ph: "i", s: "p", name: `flush queue flush (${e.reason})`, cat: "iommu", pid, tid: 0, ts: ts(e.t), args: { entries: e.entries } });
          return;
        default:
          return;
      }
    };
    this.#detach.push(trace.events.subscribe(onEvent));
  }

  /** Stops listening to every platform attached so far. */
  detach(): void {
    for (const d of this.#detach.splice(0)) d();
  }

  toJSON(): ChromeTrace {
    return { traceEvents: this.#events, displayTimeUnit: "ns" };
  }
}
