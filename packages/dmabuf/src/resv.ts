import type { Trace } from "@dmasim/trace";
import { DmaBufErrno, DmaResvUsage, MAX_SCHEDULE_TIMEOUT } from "./constants.js";
import { DmaBufCounter } from "./counters.js";
import type { DmaBufDebug } from "./debug.js";
import { DmaBufInputError } from "./errors.js";
import { kSetInInvalidate } from "./internal.js";

/**
 * struct dma_fence, on the virtual clock: it signals at `signalAt` (virtual ns). dmasim's fences are
 * created already scheduled — an exporter's copy engine knows when its copy ends — so a wait is a clock
 * advance, deterministic.
 */
export class DmaFence {
  constructor(
    /** The fence context (the engine that signals it), for reports. */
    readonly context: string,
    /** Sequence number within the context. */
    readonly seqno: number,
    /** Virtual time (ns) at which the fence signals. */
    readonly signalAt: number,
  ) {
    if (!Number.isFinite(signalAt) || signalAt < 0) throw new DmaBufInputError("dma_fence_init", "signalAt", signalAt, "a virtual time in ns >= 0");
  }

  /** dma_fence_is_signaled at virtual time `now`. */
  isSignaled(now: number): boolean {
    return now >= this.signalAt;
  }
}

/**
 * struct dma_resv: the lock (a ww_mutex) that serialises map, unmap, pin and moves of one dma-buf, and
 * its fences by usage. dmasim is single-threaded: "taking" a lock that is held means the caller would
 * block forever (nobody else runs), so lock() refuses it with -EDEADLK instead of hanging.
 */
export class DmaResv {
  readonly #trace: Trace;
  readonly #debug: DmaBufDebug;
  #locked = false;
  /** Set while dma_buf_invalidate_mappings runs its callbacks (they must not take the lock). */
  #inInvalidate = false;
  /** Unsignaled fences (signaled ones are pruned on every add and wait), by usage. */
  readonly #fences: { fence: DmaFence; usage: DmaResvUsage }[] = [];

  constructor(trace: Trace, debug: DmaBufDebug) {
    this.#trace = trace;
    this.#debug = debug;
  }

  /** True while dma_resv_lock is held. */
  get isLocked(): boolean {
    return this.#locked;
  }

  /** The core marks the window in which importers' invalidate callbacks run. */
  [kSetInInvalidate](v: boolean): void {
    this.#inInvalidate = v;
  }

  /**
   * dma_resv_lock: 0, or -EDEADLK when it is held already (in the kernel the caller would sleep; here
   * no one else could release it). Taking it inside invalidate_mappings is the rule check
   * "resv-relock-in-invalidate".
   */
  lock(): number {
    if (this.#locked) {
      if (this.#inInvalidate) {
        this.#debug.report("resv-relock-in-invalidate", "", "an importer's invalidate_mappings callback took the reservation lock: the callback runs with it held (dma_buf_invalidate_mappings), so this deadlocks");
      } else {
        this.#debug.report("api-warn", "", "dma_resv_lock of a reservation object that is already held: recursive locking deadlocks");
      }
      return -DmaBufErrno.EDEADLK;
    }
    this.#locked = true;
    return 0;
  }

  /** dma_resv_unlock. */
  unlock(): void {
    if (!this.#locked) {
      this.#debug.report("api-warn", "", "dma_resv_unlock of a reservation object that is not held");
      return;
    }
    this.#locked = false;
  }

  /** dma_resv_assert_held: true when held; otherwise the "resv-not-held" finding for `fn`. */
  assertHeld(fn: string, device: string): boolean {
    if (this.#locked) return true;
    this.#debug.report("resv-not-held", device, `${fn} without the reservation lock (dma_resv_assert_held)`);
    return false;
  }

  /** dma_resv_add_fence (after dma_resv_reserve_fences): the lock must be held. */
  addFence(fence: DmaFence, usage: DmaResvUsage): void {
    if (!(fence instanceof DmaFence)) throw new DmaBufInputError("dma_resv_add_fence", "fence", fence, "a DmaFence");
    checkUsage("dma_resv_add_fence", usage);
    this.assertHeld("dma_resv_add_fence", "");
    this.#prune();
    this.#fences.push({ fence, usage });
  }

  /** dma_resv_test_signaled: every fence of `usage` and below has signalled. */
  testSignaled(usage: DmaResvUsage): boolean {
    checkUsage("dma_resv_test_signaled", usage);
    return this.#latest(usage) <= this.#trace.clock.now;
  }

  /** When the last fence of `usage` and below signals (now, when none is pending). */
  signaledAt(usage: DmaResvUsage): number {
    return Math.max(this.#trace.clock.now, this.#latest(usage));
  }

  /**
   * dma_resv_wait_timeout: waits (advances the virtual clock) until every fence of `usage` and below has
   * signalled, at most `timeout` ns. Returns the time left (> 0, at least 1 like the kernel's jiffies) or
   * 0 when it timed out — the clock then stands at the deadline. `intr` is kept for the kernel's
   * signature: nothing interrupts a virtual wait.
   */
  waitTimeout(usage: DmaResvUsage, intr: boolean, timeout: number = MAX_SCHEDULE_TIMEOUT): number {
    const fn = "dma_resv_wait_timeout";
    checkUsage(fn, usage);
    if (typeof intr !== "boolean") throw new DmaBufInputError(fn, "intr", intr, "a boolean");
    if (typeof timeout !== "number" || Number.isNaN(timeout) || timeout < 0) throw new DmaBufInputError(fn, "timeout", timeout, "ns >= 0 (MAX_SCHEDULE_TIMEOUT for no limit)");
    const clock = this.#trace.clock;
    const now = clock.now;
    const until = this.#latest(usage);
    if (until <= now) return Math.max(1, timeout);
    const counters = this.#trace.counters;
    counters.add(DmaBufCounter.DmaBufFenceWaits);
    if (until - now > timeout) {
      counters.add(DmaBufCounter.DmaBufFenceWaitNs, timeout);
      clock.advance(timeout);
      return 0;
    }
    counters.add(DmaBufCounter.DmaBufFenceWaitNs, until - now);
    clock.advanceTo(until);
    this.#prune();
    return Math.max(1, timeout - (until - now));
  }

  /** Fences not yet signalled, of `usage` and below (for reports and tests). */
  pendingFences(usage: DmaResvUsage = DmaResvUsage.BOOKKEEP): readonly DmaFence[] {
    const now = this.#trace.clock.now;
    return this.#fences.filter((f) => f.usage <= usage && !f.fence.isSignaled(now)).map((f) => f.fence);
  }

  #latest(usage: DmaResvUsage): number {
    let t = 0;
    for (const f of this.#fences) if (f.usage <= usage && f.fence.signalAt > t) t = f.fence.signalAt;
    return t;
  }

  #prune(): void {
    const now = this.#trace.clock.now;
    for (let i = this.#fences.length - 1; i >= 0; i--) {
      const f = this.#fences[i];
      if (f?.fence.isSignaled(now) === true) this.#fences.splice(i, 1);
    }
  }
}

function checkUsage(fn: string, usage: unknown): asserts usage is DmaResvUsage {
  if (usage !== 0 && usage !== 1 && usage !== 2 && usage !== 3) throw new DmaBufInputError(fn, "usage", usage, "a DmaResvUsage (KERNEL 0, WRITE 1, READ 2, BOOKKEEP 3)");
}
