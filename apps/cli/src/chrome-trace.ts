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

/**
 * The trace: its events only. No `displayTimeUnit`: timestamps are microseconds as the format defines
 * them, and Perfetto ignores the field (chrome://tracing would only relabel its ruler).
 */
export interface ChromeTrace {
  readonly traceEvents: readonly ChromeEvent[];
}

/** Counter tracks of running totals: a name and the counters drawn on it. */
const TOTALS: readonly (readonly [string, readonly (readonly [string, Counter])[]])[] = [
  ["IO page table", [["PTE writes", Counter.PteWrites], ["PTE clears", Counter.PteClears]]],
  [
    "IOTLB invalidations",
    [
      ["sync_map", Counter.IotlbSyncMap],
      ["range", Counter.IotlbInvalRange],
      ["domain", Counter.IotlbInvalDomain],
      ["global", Counter.IotlbInvalGlobal],
    ],
  ],
  ["IOTLB lookups", [["hits", Counter.IotlbHits], ["misses", Counter.IotlbMisses], ["stale hits", Counter.IotlbStaleHits]]],
  ["IOVA allocations", [["from cache", Counter.IovaAllocCache], ["from tree", Counter.IovaAllocTree]]],
  ["swiotlb bytes bounced", [["bytes", Counter.SwiotlbBounceBytes]]],
];

/**
 * The narrowest slice drawn, in modelled nanoseconds. A call the cost profile prices at nothing (a
 * dma_iova_sync on a unit without caching mode) would otherwise begin and end at the same instant, a
 * zero-width slice Perfetto cannot show: it is widened to this, and everything after it moves on by as
 * much.
 */
export const MIN_SLICE_NS = 1;

/** What an occupancy track reads at a sample: the state now, not a running total. */
interface Occupancy {
  iovaBytes: number;
  fqEntries: number;
}

/**
 * Records the runs of a command as a Chrome trace. Each run is a process (named after the scenario,
 * API and IOMMU mode), each device a thread; DMA API calls are B/E slices (the "api" events), device
 * accesses (DMA reads and writes, IOMMU faults, stale IOTLB hits, unsupported requests) are instants on
 * the device's thread, every IOTLB invalidation (range, domain, global; a flush-queue flush is a domain
 * invalidation) is an instant on the unit's "IOTLB" thread, flush-queue flushes on "flush queue", and
 * the mm and dma-buf events on threads of their own.
 *
 * Counters are "C" tracks sampled whenever the model acts: at the end of every API call, at flush-queue
 * flushes (the lazy timeout is a timer), faults, invalidations, hmm and dma-buf events. Besides running
 * totals, occupancy tracks show the state at each sample: IOVA space in use (allocated, including
 * ranges waiting in the flush queue), flush-queue fill, swiotlb slots in use, IOTLB entries, and bytes
 * mapped by the IO page tables; and per GPU dma-buf, its blocks in VRAM and in RAM.
 *
 * The model's virtual clock only moves when something waits (a flush-queue timeout, a probe interval),
 * so timestamps are virtual time plus the modelled cost of the work done so far: each sample moves the
 * time on by the priced counters that changed since the previous one. Slices then have the width the
 * cost profile gives them (at least MIN_SLICE_NS).
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
    const tidOf = (thread: string): number => {
      let tid = tids.get(thread);
      if (tid === undefined) {
        tid = tids.size + 1;
        tids.set(thread, tid);
        events.push({ ph: "M", name: "thread_name", pid, tid, ts: 0, args: { name: thread } });
      }
      return tid;
    };
    let last: CounterSnapshot = trace.counters.snapshot();
    const origin = last;
    let modelledNs = 0;
    const shown = new Map<string, string>();
    const occupancy: Occupancy = { iovaBytes: 0, fqEntries: 0 };
    /** Per thread, the timestamps of the open slices (to keep each at least MIN_SLICE_NS wide). */
    const open = new Map<number, number[]>();
    const ts = (t: number): number => (t + modelledNs) / 1000;
    /** Moves modelled time on by the cost of what the model did since the last sample. */
    const price = (): void => {
      const now = trace.counters.snapshot();
      modelledNs += priceCounters(now.diff(last), kernel.profile).totalNs;
      last = now;
    };
    const counter = (name: string, args: Record<string, number>, at: number): void => {
      const key = JSON.stringify(args);
      if (shown.get(name) === key) return;
      shown.set(name, key);
      events.push({ ph: "C", name, pid, tid: 0, ts: at, args });
    };
    const sample = (at: number): void => {
      const moved = last.diff(origin);
      for (const [name, series] of TOTALS) {
        const args: Record<string, number> = {};
        for (const [label, c] of series) args[label] = moved.get(c);
        counter(name, args, at);
      }
      let iotlb = 0;
      let mapped = 0;
      let ptPages = 0;
      for (const unit of platform.iommus) {
        iotlb += unit.iotlb.size;
        for (const d of unit.domains()) {
          if (d.type !== "paging") continue;
          mapped += d.mappedBytes;
          ptPages += d.ptPages;
        }
      }
      counter("IOVA space in use", { bytes: occupancy.iovaBytes }, at);
      counter("flush queue fill", { entries: occupancy.fqEntries }, at);
      counter("IOTLB entries", { entries: iotlb }, at);
      counter("IO page table mapped", { bytes: mapped, "table pages": ptPages }, at);
      const swiotlb = kernel.swiotlb;
      if (swiotlb !== undefined) counter("swiotlb slots in use", { slots: swiotlb.stats.used }, at);
    };
    /** Prices the work so far, then samples every track at the event's time; returns that time. */
    const step = (t: number): number => {
      price();
      const at = ts(t);
      sample(at);
      return at;
    };
    const instant = (thread: string, name: string, cat: string, at: number, args: Record<string, number | string>): void => {
      events.push({ ph: "i", s: "t", name, cat, pid, tid: tidOf(thread), ts: at, args });
    };
    const onEvent = (e: RunLogEvent): void => {
      switch (e.type) {
        case "api": {
          price();
          const tid = tidOf(e.device);
          const stack = open.get(tid) ?? [];
          open.set(tid, stack);
          if (e.phase === "B") {
            const at = ts(e.t);
            stack.push(at);
            events.push({ ph: "B", name: e.name, cat: "dma-api", pid, tid, ts: at });
            return;
          }
          const began = stack.pop();
          if (began !== undefined && ts(e.t) - began < MIN_SLICE_NS / 1000) modelledNs += MIN_SLICE_NS - (ts(e.t) - began) * 1000;
          const at = ts(e.t);
          events.push({ ph: "E", name: e.name, cat: "dma-api", pid, tid, ts: at, ...(e.result !== undefined ? { args: { result: e.result } } : {}) });
          sample(at);
          return;
        }
        case "tlp":
          instant(e.device, e.access === "read" ? "DMA read" : "DMA write", "device", ts(e.t), { addr: hex(e.addr), len: e.len, target: e.target, path: e.path });
          return;
        case "iotlb.lookup":
          if (e.result === "stale-hit") instant(e.device, "stale IOTLB hit", "device", ts(e.t), { iova: hex(e.iova), unit: e.unit });
          return;
        case "unsupported-request":
          instant(e.device, "Unsupported Request", "device", ts(e.t), { addr: hex(e.addr), access: e.access });
          return;
        case "iommu.fault": {
          const at = step(e.t);
          instant(e.device, `IOMMU fault (${e.reason})`, "iommu", at, { iova: hex(e.iova), access: e.access });
          return;
        }
        case "iotlb.invalidate": {
          const at = step(e.t);
          const args: Record<string, number | string> = { scope: e.scope, domain: e.domain };
          if (e.scope === "range") Object.assign(args, { iova: hex(e.iova), size: e.size });
          instant(`IOTLB (${e.unit})`, `IOTLB ${e.scope} invalidation`, "iommu", at, args);
          return;
        }
        case "iova.alloc":
          occupancy.iovaBytes += e.size;
          return;
        case "iova.free":
          if (e.queued) occupancy.fqEntries++;
          else occupancy.iovaBytes -= e.size;
          return;
        case "flush-queue.release":
          occupancy.fqEntries--;
          occupancy.iovaBytes -= e.size;
          return;
        case "swiotlb.bounce":
          instant(e.device, "swiotlb bounce", "swiotlb", ts(e.t), { bytes: e.len, toDevice: String(e.toDevice) });
          return;
        case "flush-queue.flush": {
          const at = step(e.t);
          instant("flush queue", `flush queue flush (${e.reason})`, "iommu", at, { entries: e.entries, ...(e.device === undefined ? {} : { device: e.device }) });
          return;
        }
        case "hmm.range-fault": {
          const at = step(e.t);
          instant(e.mm, "hmm_range_fault", "hmm", at, { start: hex(e.start), end: hex(e.end), result: e.result });
          return;
        }
        case "mmu-notifier.invalidate": {
          const at = step(e.t);
          instant(e.mm, `mmu notifier invalidate (${e.event})`, "hmm", at, { start: hex(e.start), end: hex(e.end), subscribers: e.subscribers });
          return;
        }
        case "hmm.migrate": {
          const at = step(e.t);
          instant(e.mm === "" ? "device memory" : e.mm, `migrate to ${e.to}`, "hmm", at, { start: hex(e.start), pages: e.pages });
          return;
        }
        case "dmabuf.place": {
          const at = step(e.t);
          counter(`dma-buf ${e.exporter}#${e.buf} blocks`, { VRAM: e.inVram, RAM: e.totalBlocks - e.inVram }, at);
          return;
        }
        case "dmabuf.invalidate":
        case "dmabuf.move":
        case "dmabuf.revoke": {
          const at = step(e.t);
          const name = e.type === "dmabuf.move" ? `move to ${e.to}` : e.type === "dmabuf.revoke" ? (e.revoked ? "revoke" : "re-enable") : "invalidate_mappings";
          instant(`dma-buf ${e.exporter}#${e.buf}`, name, "dmabuf", at, e.type === "dmabuf.move" ? { blocks: e.blocks, bytes: e.bytes } : { reason: e.reason });
          if (e.type === "dmabuf.move") counter(`dma-buf ${e.exporter}#${e.buf} blocks`, { VRAM: e.inVram, RAM: e.totalBlocks - e.inVram }, at);
          return;
        }
        default:
          return;
      }
    };
    this.#detach.push(trace.events.subscribe((e) => {
      onEvent(e);
    }));
  }

  /** Stops listening to every platform attached so far. */
  detach(): void {
    for (const d of this.#detach.splice(0)) d();
  }

  toJSON(): ChromeTrace {
    return { traceEvents: this.#events };
  }
}
