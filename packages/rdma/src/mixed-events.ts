import type { VirtualClock } from "@dmasim/trace";
import { kEventDeviceAccess, kRecordEvent } from "./internal.js";

/**
 * One invalidation of one segment of a mixed MR, as the MR saw it. Times are the virtual clock's ns.
 * `tStart` is when the source began the invalidation (the mm's or the dma-buf core's InvalidationLog
 * record); `tQuiesced` when the segment's MTT slice was zapped and its IOVA slice unlinked (the callback
 * returned); `dmaUnmapNs` the DMA layer's work of that unlink priced by the kernel's cost profile (the
 * IOTLB invalidation the clock does not carry); `tFirstDma` when the NIC next reached that segment.
 */
export interface MixedEvent {
  /** Index of the segment in the MR. */
  readonly segment: number;
  /** The segment's kind. */
  readonly kind: "va" | "dmabuf";
  /** The segment's source label. */
  readonly source: string;
  /** The source's reason (an MmuNotifyEvent name, or the exporter's: migrate, evict, memory-disable…). */
  readonly reason: string;
  /** When the source began the invalidation (virtual ns). */
  readonly tStart: number;
  /** When the slice was zapped and unlinked (virtual ns). */
  readonly tQuiesced: number;
  /** The unlink's DMA-layer work priced by the cost profile (ns). */
  readonly dmaUnmapNs: number;
  /** When the NIC next reached the slice (virtual ns); undefined until it does. */
  tFirstDma: number | undefined;
}

/** Per source: how many events, and their time to quiescence and to the first DMA after them (ns). */
export interface MixedSourceLatency {
  /** The source label. */
  readonly source: string;
  /** The kind of its segments. */
  readonly kind: "va" | "dmabuf";
  /** Events recorded (kept records). */
  readonly events: number;
  /** Event → MTT slice zapped and IOVA slice unlinked (clock time plus the priced unmap work): mean and max. */
  readonly quiescenceMeanNs: number;
  /** The largest time to quiescence. */
  readonly quiescenceMaxNs: number;
  /** Event → next successful NIC access to the segment, over the events that had one: mean and max. */
  readonly firstDmaMeanNs: number | undefined;
  /** The largest time to the first DMA after an event. */
  readonly firstDmaMaxNs: number | undefined;
  /** Events not followed by an access to their segment yet (a revoked slice stays here). */
  readonly awaitingFirstDma: number;
}

/** The events of a mixed MR, oldest first (at most `limit` kept; `total` keeps counting). */
export class MixedEventLog {
  /** The kept records, oldest first. */
  readonly records: MixedEvent[] = [];
  /** At most this many records are kept. */
  readonly limit: number;
  /** Events recorded since the start, dropped records included. */
  total = 0;
  readonly #clock: VirtualClock;
  /** Per segment, the records waiting for its next device access. */
  readonly #pending = new Map<number, MixedEvent[]>();
  #awaiting = 0;

  constructor(clock: VirtualClock, limit = 4096) {
    this.#clock = clock;
    this.limit = limit;
  }

  /** Records waiting for a device access (0: the NIC's per-access hook returns at once). */
  get awaiting(): number {
    return this.#awaiting;
  }

  /** Package-private (keyed by a symbol `.` does not export): records an invalidation event of segment `segment`. */
  [kRecordEvent](segment: number, kind: "va" | "dmabuf", source: string, reason: string, tStart: number, dmaUnmapNs: number): MixedEvent {
    const e: MixedEvent = { segment, kind, source, reason, tStart, tQuiesced: this.#clock.now, dmaUnmapNs, tFirstDma: undefined };
    this.records.push(e);
    this.total++;
    if (this.records.length > this.limit) this.records.shift();
    const list = this.#pending.get(segment);
    if (list === undefined) this.#pending.set(segment, [e]);
    else list.push(e);
    this.#awaiting++;
    return e;
  }

  /** Package-private (keyed by a symbol `.` does not export): a device access reached segment `segment`: true when it was the first after an event. */
  [kEventDeviceAccess](segment: number): boolean {
    const list = this.#pending.get(segment);
    if (list === undefined) return false;
    const t = this.#clock.now;
    for (const e of list) e.tFirstDma = t;
    this.#awaiting -= list.length;
    this.#pending.delete(segment);
    return true;
  }

  /** Time to quiescence of an event: clock time from the source's start plus the priced unmap work. */
  static quiescenceNs(e: MixedEvent): number {
    return e.tQuiesced - e.tStart + e.dmaUnmapNs;
  }

  /** Time from the event to the next device access to its segment (undefined before one). */
  static firstDmaNs(e: MixedEvent): number | undefined {
    return e.tFirstDma === undefined ? undefined : e.tFirstDma - e.tStart;
  }

  /** Per source (in order of first appearance): the latency summary of the kept records. */
  bySource(): MixedSourceLatency[] {
    const groups = new Map<string, MixedEvent[]>();
    for (const e of this.records) {
      const g = groups.get(e.source);
      if (g === undefined) groups.set(e.source, [e]);
      else g.push(e);
    }
    const out: MixedSourceLatency[] = [];
    for (const [source, es] of groups) {
      const q = es.map((e) => MixedEventLog.quiescenceNs(e));
      const f = es.map((e) => MixedEventLog.firstDmaNs(e)).filter((x): x is number => x !== undefined);
      out.push({
        source,
        kind: es[0]?.kind ?? "va",
        events: es.length,
        quiescenceMeanNs: q.reduce((a, b) => a + b, 0) / q.length,
        quiescenceMaxNs: Math.max(...q),
        firstDmaMeanNs: f.length === 0 ? undefined : f.reduce((a, b) => a + b, 0) / f.length,
        firstDmaMaxNs: f.length === 0 ? undefined : Math.max(...f),
        awaitingFirstDma: es.length - f.length,
      });
    }
    return out;
  }
}
