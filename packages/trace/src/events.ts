import { TraceInputError } from "./errors.js";

export type Access = "read" | "write";
export type FaultReason = "not-mapped" | "permission" | "blocked";
export type InvalidationScope = "range" | "domain" | "global";
export type FabricPath = "memory" | "peer-via-switch" | "peer-via-host-bridge";

/**
 * Everything dmasim can report, as one discriminated union on `type`. Addresses are plain numbers here
 * (the trace layer sits below the packages that brand them). `t` is virtual time in nanoseconds.
 */
export type TraceEvent =
  /** A DMA API call: `B` when it starts and `E` when it returns, so exporters can draw slices. */
  | { type: "api"; t: number; phase: "B" | "E"; name: string; device: string; result?: number }
  | { type: "iommu.map"; t: number; unit: string; domain: number; iova: number; phys: number; size: number; prot: number }
  | { type: "iommu.unmap"; t: number; unit: string; domain: number; iova: number; size: number; unmapped: number }
  | { type: "iotlb.invalidate"; t: number; unit: string; scope: InvalidationScope; domain: number; iova: number; size: number }
  | { type: "iotlb.sync-map"; t: number; unit: string; domain: number; iova: number; size: number }
  | { type: "iommu.fault"; t: number; unit: string; device: string; iova: number; access: Access; reason: FaultReason }
  | { type: "tlp"; t: number; device: string; path: FabricPath; access: Access; addr: number; len: number }
  | { type: "unsupported-request"; t: number; device: string; access: Access; addr: number; len: number }
  | { type: "swiotlb.bounce"; t: number; device: string; orig: number; slot: number; len: number; toDevice: boolean }
  | { type: "flush-queue.flush"; t: number; cpu: number; entries: number; reason: "timeout" | "full" | "explicit" }
  | { type: "dma-debug"; t: number; device: string; check: string; message: string };

export type TraceEventType = TraceEvent["type"];
export type TraceEventOf<K extends TraceEventType> = Extract<TraceEvent, { type: K }>;
export type Subscriber = (event: TraceEvent) => void;

/** One subscription; `live` turns false when it is cancelled, even in the middle of a dispatch. */
interface Subscription {
  readonly fn: Subscriber;
  live: boolean;
}

/**
 * A typed event stream with subscribers and a bounded ring buffer of the most recent events.
 * Producers check `active` before building an event object, so a platform nobody listens to pays one
 * boolean read per potential event and allocates nothing.
 */
export class EventStream {
  readonly #ring: (TraceEvent | undefined)[];
  #head = 0;
  #size = 0;
  #recording: boolean;
  /**
   * Replaced, never modified in place: a dispatch walks the array it started with, so a subscriber may
   * subscribe or unsubscribe (itself or others) while it runs. One that is added during a dispatch sees
   * the next event, not the current one; one that is cancelled is not called again, not even for the
   * event being dispatched.
   */
  #subscribers: readonly Subscription[] = [];
  #dropped = 0;
  /** True when someone records or listens: producers skip building events otherwise. */
  active: boolean;

  constructor(options: { capacity?: number; record?: boolean } = {}) {
    const capacity = options.capacity ?? 65536;
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw new TraceInputError("capacity", capacity, "a positive integer number of events");
    }
    this.#ring = new Array<TraceEvent | undefined>(capacity);
    this.#recording = options.record ?? false;
    this.active = this.#recording;
  }

  get capacity(): number {
    return this.#ring.length;
  }

  /** Events that fell out of the ring because it was full. */
  get dropped(): number {
    return this.#dropped;
  }

  setRecording(on: boolean): void {
    this.#recording = on;
    this.#refresh();
  }

  emit(event: TraceEvent): void {
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
  subscribe(fn: Subscriber): () => void {
    const sub: Subscription = { fn, live: true };
    this.#subscribers = [...this.#subscribers, sub];
    this.#refresh();
    return () => {
      if (!sub.live) return;
      sub.live = false;
      this.#subscribers = this.#subscribers.filter((s) => s !== sub);
      this.#refresh();
    };
  }

  /** The recorded events, oldest first; optionally only those of one type. */
  events(): TraceEvent[];
  events<K extends TraceEventType>(type: K): TraceEventOf<K>[];
  events(type?: TraceEventType): TraceEvent[] {
    const out: TraceEvent[] = [];
    const cap = this.#ring.length;
    for (let i = 0; i < this.#size; i++) {
      const e = this.#ring[(this.#head + i) % cap];
      if (e !== undefined && (type === undefined || e.type === type)) out.push(e);
    }
    return out;
  }

  clear(): void {
    this.#ring.fill(undefined);
    this.#head = 0;
    this.#size = 0;
    this.#dropped = 0;
  }

  #refresh(): void {
    this.active = this.#recording || this.#subscribers.length > 0;
  }
}
