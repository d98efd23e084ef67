import type { DmaDebugChecker } from "@dmasim/dma";
import { hex, type Trace } from "@dmasim/trace";
import type { HmmOdpEvent } from "./events.js";
import { HmmErrno, MmuNotifyEvent } from "./constants.js";
import type { InvalidationLog } from "./contract.js";
import { HmmInputError, HmmStateError } from "./errors.js";
import { kPassedSeq, kStaleSeqs } from "./internal.js";

/** MMU_NOTIFIER_RANGE_BLOCKABLE. */
export const MMU_NOTIFIER_RANGE_BLOCKABLE = 1 << 0;

/** What a notifier needs of its mm (the Mm class implements it). */
export interface NotifierMm {
  /** A name for the checker's reports. */
  readonly name: string;
  /** mm_users: 0 once the process has exited. */
  readonly users: number;
  /** mm->notifier_subscriptions: the interval notifiers of this mm. */
  readonly subscriptions: MmuNotifierSubscriptions;
  /** The checker that reports notifier-protocol misuse (stale sequence, device access after invalidation). */
  readonly debug: DmaDebugChecker;
  /** The log of invalidations, for the checker and for tests. */
  readonly invalidations: InvalidationLog;
  /** The trace invalidations are reported on (`mmu-notifier.invalidate`); none when absent. */
  readonly trace?: Trace;
}

/** struct mmu_notifier_range. `end` is exclusive. */
export interface MmuNotifierRange {
  /** First address of the range. */
  readonly start: number;
  /** Address just past the range. */
  readonly end: number;
  /** MMU_NOTIFIER_RANGE_* bits (BLOCKABLE). */
  readonly flags: number;
  /** Why the range is invalidated (enum mmu_notifier_event: unmap, clear, protection, migrate…). */
  readonly event: MmuNotifyEvent;
  /** The pgmap owner for MIGRATE and EXCLUSIVE events (the device that asked); undefined otherwise. */
  readonly owner: unknown;
  /** The mm whose page tables change. */
  readonly mm: NotifierMm;
}

/** mmu_notifier_range_blockable. */
export function mmuNotifierRangeBlockable(range: MmuNotifierRange): boolean {
  return (range.flags & MMU_NOTIFIER_RANGE_BLOCKABLE) !== 0;
}

/** struct mmu_interval_notifier_finish: what invalidate_start hands to the second pass. */
export interface MmuIntervalNotifierFinish {
  /** The notifier whose second pass this is. */
  readonly notifier: MmuIntervalNotifier;
}

/** struct mmu_interval_notifier_ops. */
export interface MmuIntervalNotifierOps {
  /** Must call mmuIntervalSetSeq under the driver lock and drop every device translation of the range. */
  invalidate(sub: MmuIntervalNotifier, range: MmuNotifierRange, curSeq: number): boolean;
  /**
   * Two-pass form (7.x): start the device invalidation and, by setting `out.finish`, ask for
   * invalidateFinish after every notifier's first pass; without a finish it must act as invalidate.
   */
  invalidateStart?(sub: MmuIntervalNotifier, range: MmuNotifierRange, curSeq: number, out: { finish?: MmuIntervalNotifierFinish }): boolean;
  /** Second pass of the two-pass form: wait for the device invalidation started by invalidateStart. */
  invalidateFinish?(finish: MmuIntervalNotifierFinish): void;
  /** Model only: device translations still live in [start, end), for the checker after an invalidation. */
  liveTranslations?(sub: MmuIntervalNotifier, start: number, end: number): number;
}

/**
 * struct mmu_interval_notifier. Created empty by the driver (it is embedded in the driver's object in
 * the kernel) and set up by mmuIntervalNotifierInsert.
 */
export class MmuIntervalNotifier {
  /** Interval [start, last], inclusive as the interval tree keeps it. */
  start = 0;
  /** Last address of the interval (inclusive). */
  last = 0;
  /** The driver's callbacks; set by mmuIntervalNotifierInsert. */
  ops: MmuIntervalNotifierOps | undefined = undefined;
  /** The mm the notifier is inserted in; undefined until then. */
  mm: NotifierMm | undefined = undefined;
  /** The sequence number mmuIntervalSetSeq last stored; read_retry compares against it. */
  invalidateSeq = 0;
  /** In the interval tree (RB_EMPTY_NODE false). */
  inTree = false;
  /** On the deferred list, waiting for the invalidation to end (to be added or removed). */
  deferred = false;
  /** A name for the checker's reports (the device that owns the notifier). */
  owner = "mmu_interval_notifier";
  /** Reached through `@dmasim/hmm-odp/internal`. Sequence numbers this notifier has seen fail read_retry / check_retry: reusing one is the stale-seq bug. */
  readonly [kStaleSeqs] = new Set<number>();
  /** Reached through `@dmasim/hmm-odp/internal`. The sequence that last passed read_retry, and the lock hold it passed under. */
  [kPassedSeq] = -1;
  /** Model only: the UserLock hold under which passedSeq passed. */
  passedHold = -1;
}

/** The per-mm subscription state (struct mmu_notifier_subscriptions, the interval part). */
export class MmuNotifierSubscriptions {
  /** Even while idle, odd while an invalidation touching some interval runs. Starts at 2 as upstream. */
  invalidateSeq = 2;
  /** Invalidations running now (active_invalidate_ranges); inserts and removes are deferred while it is not 0. */
  activeInvalidateRanges = 0;
  /** The interval tree of the notifiers (a list in the model). */
  readonly itree: MmuIntervalNotifier[] = [];
  /** Notifiers to insert or remove once the running invalidations end (deferred_list). */
  readonly deferredList: MmuIntervalNotifier[] = [];
  /**
   * What a waiter (read_begin or remove during an invalidation) does instead of sleeping: a test or a
   * scheduler lets the other thread finish its invalidation here. Without it, waiting is a deadlock in a
   * single-threaded model and is reported as EDEADLK.
   */
  onWait: (() => void) | undefined = undefined;

  /** Notifiers whose interval meets [start, end). */
  overlapping(start: number, end: number): MmuIntervalNotifier[] {
    const out: MmuIntervalNotifier[] = [];
    for (const s of this.itree) if (s.start < end && s.last >= start) out.push(s);
    return out;
  }
}

function isInvalidating(subs: MmuNotifierSubscriptions): boolean {
  return (subs.invalidateSeq & 1) !== 0;
}

/**
 * mmu_interval_notifier_insert: watch [start, start + length) of `mm`. Returns 0, -EOVERFLOW for an empty
 * or overflowing interval, -EINVAL for an mm with no users. A notifier inserted while an invalidation runs
 * starts out colliding, so its first read_begin waits for that invalidation to end.
 */
export function mmuIntervalNotifierInsert(sub: MmuIntervalNotifier, mm: NotifierMm, start: number, length: number, ops: MmuIntervalNotifierOps): number {
  const fn = "mmu_interval_notifier_insert";
  if (!(sub instanceof MmuIntervalNotifier)) throw new HmmInputError(fn, "sub", sub, "an MmuIntervalNotifier");
  if (sub.mm !== undefined) throw new HmmStateError("EBUSY", `${fn}: the notifier is already inserted; remove it first`);
  if (!Number.isSafeInteger(start) || start < 0) throw new HmmInputError(fn, "start", start, "an address: a safe integer >= 0");
  if (!Number.isSafeInteger(length) || length < 0) throw new HmmInputError(fn, "length", length, "a byte count: a safe integer >= 0");
  if (typeof ops.invalidate !== "function") throw new HmmInputError(fn, "ops", ops, "an object with an invalidate function");
  if (length === 0 || start > Number.MAX_SAFE_INTEGER - (length - 1)) return -HmmErrno.EOVERFLOW;
  if (mm.users <= 0) {
    mm.debug.warnOnce(sub.owner, fn, `${fn}: WARN_ON(atomic_read(&mm->mm_users) <= 0): ${mm.name} has exited`);
    return -HmmErrno.EINVAL;
  }
  const subs = mm.subscriptions;
  sub.start = start;
  sub.last = start + length - 1;
  sub.ops = ops;
  sub.mm = mm;
  if (subs.activeInvalidateRanges > 0) {
    if (isInvalidating(subs)) {
      sub.deferred = true;
      subs.deferredList.push(sub);
    } else {
      subs.invalidateSeq |= 1;
      sub.inTree = true;
      subs.itree.push(sub);
    }
    sub.invalidateSeq = subs.invalidateSeq;
  } else {
    sub.invalidateSeq = subs.invalidateSeq - 1;
    sub.inTree = true;
    subs.itree.push(sub);
  }
  return 0;
}

/**
 * mmu_interval_notifier_remove: after it returns no callback runs or will run. During an invalidation the
 * removal is deferred and the caller waits for the invalidation to end (subs.onWait, else EDEADLK).
 */
export function mmuIntervalNotifierRemove(sub: MmuIntervalNotifier): void {
  const mm = sub.mm;
  if (mm === undefined) throw new HmmStateError("EINVAL", "mmu_interval_notifier_remove: the notifier is not inserted");
  const subs = mm.subscriptions;
  let seq = 0;
  if (isInvalidating(subs)) {
    if (!sub.inTree) {
      const i = subs.deferredList.indexOf(sub);
      if (i >= 0) subs.deferredList.splice(i, 1);
      sub.deferred = false;
    } else {
      sub.deferred = true;
      subs.deferredList.push(sub);
      seq = subs.invalidateSeq;
    }
  } else {
    treeRemove(subs, sub);
  }
  if (seq !== 0) waitFor(subs, seq, "mmu_interval_notifier_remove");
  sub.mm = undefined;
  sub.ops = undefined;
}

function treeRemove(subs: MmuNotifierSubscriptions, sub: MmuIntervalNotifier): void {
  const i = subs.itree.indexOf(sub);
  if (i >= 0) subs.itree.splice(i, 1);
  sub.inTree = false;
}

function waitFor(subs: MmuNotifierSubscriptions, seq: number, fn: string): void {
  if (subs.invalidateSeq === seq) subs.onWait?.();
  if (subs.invalidateSeq === seq) {
    throw new HmmStateError("EDEADLK", `${fn}: waits for the running invalidation (seq ${seq}) to end, which cannot happen on this thread: call it outside the invalidate callback, or let subscriptions.onWait finish the invalidation`);
  }
}

/** mmu_interval_read_begin: the sequence to pass to hmm_range_fault; waits out a colliding invalidation. */
export function mmuIntervalReadBegin(sub: MmuIntervalNotifier): number {
  const mm = sub.mm;
  if (mm === undefined) throw new HmmStateError("EINVAL", "mmu_interval_read_begin: the notifier is not inserted");
  const subs = mm.subscriptions;
  const seq = sub.invalidateSeq;
  if (seq === subs.invalidateSeq) waitFor(subs, seq, "mmu_interval_read_begin");
  return seq;
}

/** mmu_interval_check_retry: the lockless hint hmm_range_fault uses. */
export function mmuIntervalCheckRetry(sub: MmuIntervalNotifier, seq: number): boolean {
  const retry = sub.invalidateSeq !== seq;
  if (retry) sub[kStaleSeqs].add(seq);
  return retry;
}

/** A driver lock (the "user_lock" of the notifier protocol: a mutex the invalidate callback also takes). */
export class UserLock {
  #held = false;
  #holds = 0;
  readonly #waiters: (() => void)[] = [];
  /** Name of the lock, for error messages. */
  readonly name: string;
  constructor(name = "user_lock") {
    this.name = name;
  }
  /** True while the lock is taken. */
  get held(): boolean {
    return this.#held;
  }
  /** A number identifying the current hold (changes on every lock). */
  get hold(): number {
    return this.#holds;
  }
  /** mutex_lock; taking it twice on the one thread of the model is a deadlock (EDEADLK). */
  lock(): void {
    if (this.#held) throw new HmmStateError("EDEADLK", `${this.name}: lock taken twice on one thread (mutex_lock would deadlock)`);
    this.#held = true;
    this.#holds++;
  }
  /** mutex_trylock. */
  tryLock(): boolean {
    if (this.#held) return false;
    this.lock();
    return true;
  }
  /** mutex_unlock; unlocking a lock not held is refused (EPERM). */
  unlock(): void {
    if (!this.#held) throw new HmmStateError("EPERM", `${this.name}: unlock of a lock that is not held`);
    this.#held = false;
    // No waiters is every unlock of a fault: no copy of the (empty) list then.
    if (this.#waiters.length === 0) return;
    const waiters = this.#waiters.splice(0);
    for (const w of waiters) w();
  }
  /**
   * Model of another thread that blocks on this lock: `fn` runs when the holder unlocks (at once if the
   * lock is free). A race injected while the driver holds its lock goes through here.
   */
  whenUnlocked(fn: () => void): void {
    if (this.#held) this.#waiters.push(fn);
    else fn();
  }
}

/**
 * mmu_interval_read_retry: under the driver lock, true when an invalidation ran since read_begin gave
 * `seq`. A false answer under `lock` is what allows programming device PTEs (hmmCheckMayProgram).
 */
export function mmuIntervalReadRetry(sub: MmuIntervalNotifier, seq: number, lock?: UserLock): boolean {
  const retry = sub.invalidateSeq !== seq;
  if (retry) {
    sub[kStaleSeqs].add(seq);
  } else if (lock?.held === true) {
    sub[kPassedSeq] = seq;
    sub.passedHold = lock.hold;
  }
  return retry;
}

/** mmu_interval_set_seq: called by the invalidate callback under the driver lock. */
export function mmuIntervalSetSeq(sub: MmuIntervalNotifier, curSeq: number): void {
  sub.invalidateSeq = curSeq;
}

/**
 * The checker's test before a driver writes device PTEs from hmm_range_fault output: the driver lock is
 * held, and under this hold read_retry passed for a sequence no invalidation has overtaken since.
 */
export function hmmCheckMayProgram(sub: MmuIntervalNotifier, lock: UserLock): boolean {
  const mm = sub.mm;
  if (mm === undefined) return false;
  const ok = lock.held && sub.passedHold === lock.hold && sub[kPassedSeq] === sub.invalidateSeq;
  if (!ok) {
    mm.debug.report(
      "hmm-pte-without-retry",
      sub.owner,
      lock.held
        ? `device PTEs programmed without a passing mmu_interval_read_retry under this hold of ${lock.name}`
        : `device PTEs programmed without holding ${lock.name} (the invalidate callback's lock)`,
    );
  }
  return ok;
}

/** mmu_notifier_invalidate_range_start for interval notifiers (mn_itree_invalidate). 0 or -EAGAIN. */
export function mmuNotifierInvalidateRangeStart(range: MmuNotifierRange): number {
  const mm = range.mm;
  const subs = mm.subscriptions;
  subs.activeInvalidateRanges++;
  const hit = subs.overlapping(range.start, range.end);
  if (hit.length === 0) return 0;
  subs.invalidateSeq |= 1;
  const curSeq = subs.invalidateSeq;
  const rec = mm.invalidations.begin(eventName(range.event), range.start, range.end);
  rec.subscribers = hit.length;
  const blockable = mmuNotifierRangeBlockable(range);
  const finishes: MmuIntervalNotifierFinish[] = [];
  let wouldBlock = false;
  for (const sub of hit) {
    const ops = sub.ops;
    if (ops === undefined) continue;
    let ok: boolean;
    if (ops.invalidateStart !== undefined) {
      const out: { finish?: MmuIntervalNotifierFinish } = {};
      ok = ops.invalidateStart(sub, range, curSeq, out);
      if (out.finish !== undefined) finishes.push(out.finish);
      else if (ok) checkInvalidated(sub, range, curSeq);
    } else {
      ok = ops.invalidate(sub, range, curSeq);
      if (ok) checkInvalidated(sub, range, curSeq);
    }
    if (!ok) {
      if (blockable) {
        mm.debug.warnOnce(sub.owner, "mn_itree_invalidate", "mn_itree_invalidate: WARN_ON(mmu_notifier_range_blockable(range)): a blockable invalidate returned false");
        continue;
      }
      wouldBlock = true;
      break;
    }
  }
  for (const f of finishes) {
    f.notifier.ops?.invalidateFinish?.(f);
    checkInvalidated(f.notifier, range, curSeq);
  }
  if (wouldBlock) {
    mmuNotifierInvalidateRangeEnd(range);
    emitInvalidate(range, hit.length, -HmmErrno.EAGAIN);
    return -HmmErrno.EAGAIN;
  }
  mm.invalidations.quiesced(rec);
  emitInvalidate(range, hit.length, 0);
  return 0;
}

function emitInvalidate(range: MmuNotifierRange, subscribers: number, result: number): void {
  const trace = range.mm.trace;
  if (trace?.events.active !== true) return;
  trace.events.view<HmmOdpEvent>().emit({ type: "mmu-notifier.invalidate", t: trace.clock.now, mm: range.mm.name, start: range.start, end: range.end, event: eventName(range.event), subscribers, result });
}

function checkInvalidated(sub: MmuIntervalNotifier, range: MmuNotifierRange, curSeq: number): void {
  const mm = range.mm;
  // A MIGRATE or EXCLUSIVE event carries the device that asked for it, and that device's callback may
  // return at once (dmirror, nouveau): its own migration code updates its mirror. Not checked.
  if (range.owner !== undefined && (range.event === MmuNotifyEvent.MIGRATE || range.event === MmuNotifyEvent.EXCLUSIVE)) return;
  if (sub.invalidateSeq !== curSeq) {
    mm.debug.report("hmm-invalidate-incomplete", sub.owner, `the invalidate callback returned true without mmu_interval_set_seq(${curSeq}) (seq is ${sub.invalidateSeq}): a racing fault would program stale PTEs`);
  }
  const live = sub.ops?.liveTranslations?.(sub, Math.max(range.start, sub.start), Math.min(range.end, sub.last + 1)) ?? 0;
  if (live > 0) {
    mm.debug.report("hmm-invalidate-incomplete", sub.owner, `the invalidate callback returned with ${live} device translations still live in [${hex(range.start)}, ${hex(range.end)})`);
  }
}

/** mmu_notifier_invalidate_range_end (mn_itree_inv_end): the last range ends the write side. */
export function mmuNotifierInvalidateRangeEnd(range: MmuNotifierRange): void {
  const subs = range.mm.subscriptions;
  if (subs.activeInvalidateRanges <= 0) throw new HmmStateError("EINVAL", "mmu_notifier_invalidate_range_end without a matching start");
  subs.activeInvalidateRanges--;
  if (subs.activeInvalidateRanges > 0 || !isInvalidating(subs)) return;
  subs.invalidateSeq++;
  const deferred = subs.deferredList.splice(0);
  for (const sub of deferred) {
    sub.deferred = false;
    if (!sub.inTree) {
      sub.inTree = true;
      subs.itree.push(sub);
    } else {
      treeRemove(subs, sub);
    }
  }
}

/** mn_itree_release: the mm exits; every notifier gets RELEASE over the whole address space. */
export function mmuNotifierRelease(mm: NotifierMm): void {
  const range: MmuNotifierRange = { start: 0, end: Number.MAX_SAFE_INTEGER, flags: MMU_NOTIFIER_RANGE_BLOCKABLE, event: MmuNotifyEvent.RELEASE, owner: undefined, mm };
  mmuNotifierInvalidateRangeStart(range);
  mmuNotifierInvalidateRangeEnd(range);
}

const EVENT_NAMES = Object.keys(MmuNotifyEvent);
export function eventName(e: MmuNotifyEvent): string {
  return EVENT_NAMES[e] ?? String(e);
}
