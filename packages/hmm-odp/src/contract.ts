import type { VirtualClock } from "@dmasim/trace";

/**
 * One invalidation as its source saw it: what was taken away, how many subscribers had a translation to
 * drop, when it started, when every subscriber had dropped it (quiescence), and when a device next
 * accessed memory through a re-established translation. Times are virtual nanoseconds.
 */
export interface InvalidationRecord {
  /** Who invalidated: the log's source (an mm, a dma-buf exporter). */
  readonly source: string;
  /** The reason, in the source's vocabulary (an MmuNotifyEvent name for an mm). */
  readonly reason: string;
  /** First address (or offset) taken away. */
  readonly start: number;
  /** Address (or offset) just past what was taken away. */
  readonly end: number;
  /** Subscribers that had a translation of the range to drop. */
  subscribers: number;
  /** When the invalidation started. */
  readonly tStart: number;
  /** When every subscriber had dropped its translations; undefined until then. */
  tQuiesced: number | undefined;
  /** When a device next accessed memory after the invalidation; undefined until it does. */
  tFirstDmaAfter: number | undefined;
}

/**
 * The invalidation contract: a source of invalidations (an mm's notifiers here; a dma-buf exporter's
 * move_notify and a VFIO revoke implement the same shape) tells its subscribers what is being taken away,
 * and this log measures the two latencies that matter to a device user: time to quiescence (all
 * subscribers' device translations gone) and time to the first DMA after the event.
 */
export class InvalidationLog {
  /** The most recent invalidations, oldest first (at most `limit`). */
  readonly records: InvalidationRecord[] = [];
  readonly #clock: VirtualClock;
  readonly #source: string;
  /** Records still waiting for a device access after them (oldest first). */
  #awaitingDma = 0;
  /** At most this many records are kept (oldest dropped); the counts below keep counting. */
  readonly limit: number;
  /** Invalidations logged since the start, dropped records included. */
  total = 0;

  constructor(clock: VirtualClock, source: string, limit = 4096) {
    this.#clock = clock;
    this.#source = source;
    this.limit = limit;
  }

  /** An invalidation starts. */
  begin(reason: string, start: number, end: number): InvalidationRecord {
    const r: InvalidationRecord = { source: this.#source, reason, start, end, subscribers: 0, tStart: this.#clock.now, tQuiesced: undefined, tFirstDmaAfter: undefined };
    this.records.push(r);
    this.total++;
    if (this.records.length > this.limit) {
      this.records.shift();
      if (this.#awaitingDma > 0) this.#awaitingDma--;
    }
    return r;
  }

  /** Every subscriber has returned from its invalidation: no device translation of the range is left. */
  quiesced(r: InvalidationRecord): void {
    r.tQuiesced = this.#clock.now;
  }

  /** A device accessed memory: the first access after each pending invalidation is recorded. */
  deviceAccess(): void {
    const recs = this.records;
    if (this.#awaitingDma === recs.length) return;
    const t = this.#clock.now;
    for (let i = this.#awaitingDma; i < recs.length; i++) {
      const r = recs[i];
      if (r !== undefined && r.tFirstDmaAfter === undefined) r.tFirstDmaAfter = t;
    }
    this.#awaitingDma = recs.length;
  }

  /** Time from start to quiescence of a record (undefined while not quiesced). */
  static timeToQuiescence(r: InvalidationRecord): number | undefined {
    return r.tQuiesced === undefined ? undefined : r.tQuiesced - r.tStart;
  }

  /** Time from start to the first device access after it (undefined before one). */
  static timeToFirstDma(r: InvalidationRecord): number | undefined {
    return r.tFirstDmaAfter === undefined ? undefined : r.tFirstDmaAfter - r.tStart;
  }
}
