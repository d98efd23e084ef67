import { TraceInputError } from "./errors.js";

/**
 * What every event has: a `type` naming it and `t`, virtual time in nanoseconds. This package names no
 * event: each package declares the union of its own events in its `events.ts` (iommu's `IommuEvent`,
 * pcie-p2p's `PcieP2pEvent`, dma's `DmaEvent`) and exports, as `TraceEvent`, the union of its own and those
 * of the layers below it, the way it exports `Counter`.
 */
export interface TraceEventBase {
  /** Names the event (`iommu.map`, `swiotlb.bounce`…); the discriminant of a package's event union. */
  readonly type: string;
  /** Virtual time of the event in nanoseconds (the platform clock's `now` when it was emitted). */
  readonly t: number;
}

/** The member of the union `E` whose `type` is `K`. */
export type TraceEventOf<E extends TraceEventBase, K extends E["type"]> = Extract<E, { type: K }>;
/** A function called synchronously with each event emitted after it subscribed. */
export type Subscriber<E extends TraceEventBase = TraceEventBase> = (event: E) => void;

/** One subscription; `live` turns false when it is cancelled, even in the middle of a dispatch. */
interface Subscription<E extends TraceEventBase> {
  // Method syntax on purpose: it keeps `EventStream<Narrow>` assignable to a plain `EventStream`.
  fn(event: E): void;
  live: boolean;
}

/**
 * A typed event stream with subscribers and a bounded ring buffer of the most recent events.
 * Producers check `active` before building an event object, so a platform nobody listens to pays one
 * boolean read per potential event and allocates nothing.
 *
 * `E` is the union of events the holder knows about. One stream carries the events of every layer of a
 * platform, so a holder typed with the layers it sees may also meet events of layers above it: a
 * subscriber narrows on `type` and lets the types it does not know pass. `view<F>()` is the same stream
 * typed with another union (an upper layer widening the platform's, a producer naming its own).
 */
export class EventStream<E extends TraceEventBase = TraceEventBase> {
  readonly #ring: (E | undefined)[];
  #head = 0;
  #size = 0;
  #recording: boolean;
  /**
   * Replaced, never modified in place: a dispatch walks the array it started with, so a subscriber may
   * subscribe or unsubscribe (itself or others) while it runs. One that is added during a dispatch sees
   * the next event, not the current one; one that is cancelled is not called again, not even for the
   * event being dispatched.
   */
  #subscribers: readonly Subscription<E>[] = [];
  #dropped = 0;
  /** Called with the new `active` when it changes (onActiveChange); replaced, never modified in place. */
  #activeWatchers: readonly ((active: boolean) => void)[] = [];
  /**
   * True when someone records or listens: producers skip building events otherwise. Read-only to users:
   * it follows recording and subscribers, and producers that fold it into a flag of their own learn of
   * each change through `onActiveChange`. A plain field rather than a getter: every producer tests it on
   * its hot path.
   */
  readonly active: boolean = false;

  constructor(options: { capacity?: number; record?: boolean } = {}) {
    const capacity = options.capacity ?? 65536;
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw new TraceInputError("capacity", capacity, "a positive integer number of events");
    }
    this.#ring = new Array<E | undefined>(capacity);
    this.#recording = options.record ?? false;
    (this as { active: boolean }).active = this.#recording;
  }

  /** How many events the ring keeps before the oldest fall out (default 65536). */
  get capacity(): number {
    return this.#ring.length;
  }

  /** Events that fell out of the ring because it was full. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Starts or stops keeping events in the ring; subscribers are called either way. */
  setRecording(on: boolean): void {
    this.#recording = on;
    this.#refresh();
  }

  /**
   * Delivers `event` to every subscriber and records it when recording. A producer names its own union
   * (`events.emit<IommuEvent>({ ... })`) so the compiler checks the event against it.
   */
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- F is for the caller to name
  emit<F extends E>(event: F): void {
    if (this.#recording) {
      const cap = this.#ring.length;
      this.#ring[(this.#head + this.#size) % cap] = event;
      if (this.#size < cap) this.#size++;
      else {
        this.#head = (this.#head + 1) % cap;
        this.#dropped++;
      }
    }
    for (const s of this.#subscribers) if (s.live) s.fn(event);
  }

  /** Calls `fn` for every later event; returns the function that unsubscribes. */
  subscribe(fn: Subscriber<E>): () => void {
    const sub: Subscription<E> = { fn, live: true };
    this.#subscribers = [...this.#subscribers, sub];
    this.#refresh();
    return () => {
      if (!sub.live) return;
      sub.live = false;
      this.#subscribers = this.#subscribers.filter((s) => s !== sub);
      this.#refresh();
    };
  }

  /**
   * Calls `fn` with the new value of `active` each time it changes (a first subscriber came, the last
   * left, recording was switched), so that a producer can fold "someone listens" into a flag of its own
   * and test one field on its hot path. Returns the function that stops the calls.
   */
  onActiveChange(fn: (active: boolean) => void): () => void {
    this.#activeWatchers = [...this.#activeWatchers, fn];
    return () => {
      this.#activeWatchers = this.#activeWatchers.filter((w) => w !== fn);
    };
  }

  /** The recorded events, oldest first; optionally only those of one type. */
  events(): E[];
  events<K extends E["type"]>(type: K): TraceEventOf<E, K>[];
  events(type?: string): E[] {
    const out: E[] = [];
    const cap = this.#ring.length;
    for (let i = 0; i < this.#size; i++) {
      const e = this.#ring[(this.#head + i) % cap];
      if (e !== undefined && (type === undefined || e.type === type)) out.push(e);
    }
    return out;
  }

  /**
   * This stream typed as carrying `F`: no copy and no check, only the name the caller reads it by. An
   * upper layer views the platform's stream with the union of the layers it knows (`DmaKernel.trace`).
   */
  view<F extends TraceEventBase>(): EventStream<F> {
    return this as unknown as EventStream<F>;
  }

  /** Empties the ring and zeroes `dropped`; subscribers and the recording switch stay as they are. */
  clear(): void {
    this.#ring.fill(undefined);
    this.#head = 0;
    this.#size = 0;
    this.#dropped = 0;
  }

  #refresh(): void {
    const active = this.#recording || this.#subscribers.length > 0;
    if (active === this.active) return;
    (this as { active: boolean }).active = active;
    for (const w of this.#activeWatchers) w(active);
  }
}
