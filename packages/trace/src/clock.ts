import { TraceInputError } from "./errors.js";

/** Handle of a scheduled timer, for `cancel`. */
export interface TimerHandle {
  /** Identity of the timer on its clock, unique for the clock's lifetime. */
  readonly id: number;
  /** Virtual time in ns at which the timer fires. */
  readonly deadline: number;
}

interface Timer {
  id: number;
  deadline: number;
  fn: () => void;
}

/**
 * Virtual time in nanoseconds. Nothing in dmasim reads the wall clock: time moves only when `advance`
 * or `advanceTo` is called, and timers (the flush queue's 10 ms timeout, for one) fire in deadline order,
 * ties in the order they were set, so a run is reproducible.
 */
export class VirtualClock {
  #now = 0;
  #nextId = 1;
  #timers: Timer[] = [];

  /** Current virtual time in nanoseconds since the clock was created (starts at 0). */
  get now(): number {
    return this.#now;
  }

  /**
   * Moves time forward by `ns` nanoseconds, firing due timers; throws `TraceInputError` for a negative or non-finite
   * `ns`.
   */
  advance(ns: number): void {
    if (!Number.isFinite(ns) || ns < 0) {
      throw new TraceInputError("ns", ns, "a finite number of nanoseconds >= 0");
    }
    this.advanceTo(this.#now + ns);
  }

  /** Moves time forward to `t`, firing every timer whose deadline is <= `t` at its own deadline. */
  advanceTo(t: number): void {
    if (!Number.isFinite(t) || t < this.#now) {
      throw new TraceInputError("t", t, `a time >= now (${this.#now} ns)`);
    }
    for (;;) {
      const next = this.#timers[0];
      if (next === undefined || next.deadline > t) break;
      this.#timers.shift();
      this.#now = next.deadline;
      next.fn();
    }
    this.#now = t;
  }

  /** Calls `fn` once when time reaches `now + delay`. */
  setTimer(delay: number, fn: () => void): TimerHandle {
    if (!Number.isFinite(delay) || delay < 0) {
      throw new TraceInputError("delay", delay, "a finite delay in nanoseconds >= 0");
    }
    const timer: Timer = { id: this.#nextId++, deadline: this.#now + delay, fn };
    // Keep sorted by deadline, stable for equal deadlines; timers are few (one per flush queue).
    let i = this.#timers.length;
    while (i > 0 && (this.#timers[i - 1]?.deadline ?? 0) > timer.deadline) i--;
    this.#timers.splice(i, 0, timer);
    return { id: timer.id, deadline: timer.deadline };
  }

  /** Removes a pending timer (the kernel's del_timer); false when it already fired or was cancelled. */
  cancel(handle: TimerHandle): boolean {
    const i = this.#timers.findIndex((t) => t.id === handle.id);
    if (i < 0) return false;
    this.#timers.splice(i, 1);
    return true;
  }

  /** Deadline of the earliest pending timer, or undefined. */
  nextDeadline(): number | undefined {
    return this.#timers[0]?.deadline;
  }

  /** Number of timers set and neither fired nor cancelled. */
  pendingTimers(): number {
    return this.#timers.length;
  }
}
