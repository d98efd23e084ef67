import { DmaDebugError } from "@dmasim/dma";
import { describe, expect, it } from "vitest";
import { HmmErrno, MmuNotifyEvent } from "./constants.js";
import { HmmInputError, HmmStateError } from "./errors.js";
import { Mm } from "./mm.js";
import {
  MMU_NOTIFIER_RANGE_BLOCKABLE,
  MmuIntervalNotifier,
  UserLock,
  mmuIntervalNotifierInsert,
  mmuIntervalNotifierRemove,
  mmuIntervalReadBegin,
  mmuIntervalReadRetry,
  mmuIntervalSetSeq,
  mmuNotifierInvalidateRangeEnd,
  mmuNotifierInvalidateRangeStart,
  mmuNotifierRangeBlockable,
} from "./notifier.js";
import type { MmuIntervalNotifierFinish, MmuIntervalNotifierOps, MmuNotifierRange } from "./notifier.js";
import { hmmRig } from "./test-fixtures.js";

/** ops that record calls and behave as the protocol asks (lock, set_seq, unlock). */
function recorder(lock = new UserLock()): { ops: MmuIntervalNotifierOps; calls: { event: number; start: number; end: number; seq: number }[]; lock: UserLock } {
  const calls: { event: number; start: number; end: number; seq: number }[] = [];
  return {
    calls,
    lock,
    ops: {
      invalidate(sub, range, curSeq) {
        if (mmuNotifierRangeBlockable(range)) lock.lock();
        else if (!lock.tryLock()) return false;
        mmuIntervalSetSeq(sub, curSeq);
        calls.push({ event: range.event, start: range.start, end: range.end, seq: curSeq });
        lock.unlock();
        return true;
      },
    },
  };
}

function range(mm: Mm, start: number, end: number, blockable = true): MmuNotifierRange {
  return { start, end, flags: blockable ? MMU_NOTIFIER_RANGE_BLOCKABLE : 0, event: MmuNotifyEvent.CLEAR, owner: undefined, mm };
}

describe("mmu_interval_notifier", () => {
  it("insert: -EOVERFLOW for an empty or overflowing interval, -EINVAL for an exited mm, typed errors for bad input", () => {
    const { mm, kernel } = hmmRig({ debug: "collect" });
    const r = recorder();
    expect(mmuIntervalNotifierInsert(new MmuIntervalNotifier(), mm, 0x1000, 0, r.ops)).toBe(-HmmErrno.EOVERFLOW);
    expect(mmuIntervalNotifierInsert(new MmuIntervalNotifier(), mm, Number.MAX_SAFE_INTEGER, 2, r.ops)).toBe(-HmmErrno.EOVERFLOW);
    expect(() => mmuIntervalNotifierInsert(new MmuIntervalNotifier(), mm, -1, 4096, r.ops)).toThrow(HmmInputError);
    expect(mm.subscriptions.itree).toHaveLength(0);
    const gone = new Mm(mm.sys);
    gone.exit();
    expect(mmuIntervalNotifierInsert(new MmuIntervalNotifier(), gone, 0, 4096, r.ops)).toBe(-HmmErrno.EINVAL);
    expect(kernel.debugReports().map((x) => x.check)).toEqual(["api-warn"]);
  });

  it("a notifier inserted while idle starts with seq = subs seq - 1; read_begin/read_retry follow invalidations", () => {
    const { mm } = hmmRig();
    const sub = new MmuIntervalNotifier();
    const r = recorder();
    expect(mmuIntervalNotifierInsert(sub, mm, 0x10000, 0x10000, r.ops)).toBe(0);
    expect(sub.invalidateSeq).toBe(mm.subscriptions.invalidateSeq - 1);
    const seq = mmuIntervalReadBegin(sub);
    expect(mmuIntervalReadRetry(sub, seq)).toBe(false);
    // Outside the interval: no callback, seq unchanged.
    const outside = range(mm, 0x20000, 0x21000);
    expect(mmuNotifierInvalidateRangeStart(outside)).toBe(0);
    mmuNotifierInvalidateRangeEnd(outside);
    expect(r.calls).toHaveLength(0);
    expect(mmuIntervalReadRetry(sub, seq)).toBe(false);
    // Inside: the callback runs with an odd cur_seq, and the reader must retry.
    const inside = range(mm, 0x18000, 0x19000);
    expect(mmuNotifierInvalidateRangeStart(inside)).toBe(0);
    expect(r.calls[0]?.seq).toBe(mm.subscriptions.invalidateSeq);
    expect((r.calls[0]?.seq ?? 0) % 2).toBe(1);
    mmuNotifierInvalidateRangeEnd(inside);
    expect(mm.subscriptions.invalidateSeq % 2).toBe(0);
    expect(mmuIntervalReadRetry(sub, seq)).toBe(true);
    const seq2 = mmuIntervalReadBegin(sub);
    expect(mmuIntervalReadRetry(sub, seq2)).toBe(false);
  });

  it("insert during an invalidation that hit an interval is deferred to its end, and the new notifier starts colliding", () => {
    const { mm } = hmmRig();
    const a = new MmuIntervalNotifier();
    mmuIntervalNotifierInsert(a, mm, 0, 0x100000, recorder().ops);
    const inv = range(mm, 0x1000, 0x2000);
    mmuNotifierInvalidateRangeStart(inv);
    const b = new MmuIntervalNotifier();
    expect(mmuIntervalNotifierInsert(b, mm, 0, 0x100000, recorder().ops)).toBe(0);
    expect(b.inTree).toBe(false);
    expect(mm.subscriptions.deferredList).toContain(b);
    expect(b.invalidateSeq).toBe(mm.subscriptions.invalidateSeq);
    // Its first read_begin would wait for the invalidation: in one thread that is EDEADLK unless the
    // invalidating side can run (onWait).
    expect(() => mmuIntervalReadBegin(b)).toThrow(HmmStateError);
    mm.subscriptions.onWait = () => {
      mmuNotifierInvalidateRangeEnd(inv);
    };
    const seq = mmuIntervalReadBegin(b);
    expect(b.inTree).toBe(true);
    expect(mmuIntervalReadRetry(b, seq)).toBe(false);
  });

  it("insert during an invalidation that hit no interval goes into the tree at once, colliding", () => {
    const { mm } = hmmRig();
    const inv = range(mm, 0x1000, 0x2000);
    mmuNotifierInvalidateRangeStart(inv);
    expect(mm.subscriptions.invalidateSeq % 2).toBe(0);
    const b = new MmuIntervalNotifier();
    mmuIntervalNotifierInsert(b, mm, 0, 0x100000, recorder().ops);
    expect(b.inTree).toBe(true);
    expect(mm.subscriptions.invalidateSeq % 2).toBe(1);
    expect(b.invalidateSeq).toBe(mm.subscriptions.invalidateSeq);
    mmuNotifierInvalidateRangeEnd(inv);
    expect(mm.subscriptions.invalidateSeq % 2).toBe(0);
    expect(mmuIntervalReadRetry(b, mmuIntervalReadBegin(b))).toBe(false);
  });

  it("remove during an invalidation is deferred; after it returns no callback runs", () => {
    const { mm } = hmmRig();
    const r = recorder();
    const a = new MmuIntervalNotifier();
    mmuIntervalNotifierInsert(a, mm, 0, 0x100000, r.ops);
    const inv = range(mm, 0x1000, 0x2000);
    mmuNotifierInvalidateRangeStart(inv);
    mm.subscriptions.onWait = () => {
      mmuNotifierInvalidateRangeEnd(inv);
    };
    mmuIntervalNotifierRemove(a);
    expect(mm.subscriptions.itree).toHaveLength(0);
    const n = r.calls.length;
    const again = range(mm, 0x1000, 0x2000);
    mmuNotifierInvalidateRangeStart(again);
    mmuNotifierInvalidateRangeEnd(again);
    expect(r.calls).toHaveLength(n);
  });

  it("non-blockable: a callback that cannot take its lock returns false and the start reports -EAGAIN", () => {
    const { mm } = hmmRig();
    const r = recorder();
    const a = new MmuIntervalNotifier();
    mmuIntervalNotifierInsert(a, mm, 0, 0x100000, r.ops);
    r.lock.lock();
    expect(mmuNotifierInvalidateRangeStart(range(mm, 0, 0x1000, false))).toBe(-HmmErrno.EAGAIN);
    // inv_end already ran: the mm is idle again.
    expect(mm.subscriptions.activeInvalidateRanges).toBe(0);
    expect(mm.subscriptions.invalidateSeq % 2).toBe(0);
    r.lock.unlock();
    expect(mmuNotifierInvalidateRangeStart(range(mm, 0, 0x1000, false))).toBe(0);
  });

  it("two-pass: every notifier's start runs before any finish", () => {
    const { mm } = hmmRig();
    const order: string[] = [];
    const twoPass = (name: string): MmuIntervalNotifierOps => ({
      invalidate: () => {
        throw new Error("not called when invalidateStart exists");
      },
      invalidateStart(sub, _r, curSeq, out) {
        mmuIntervalSetSeq(sub, curSeq);
        order.push(`start ${name}`);
        out.finish = { notifier: sub } satisfies MmuIntervalNotifierFinish;
        return true;
      },
      invalidateFinish() {
        order.push(`finish ${name}`);
      },
    });
    mmuIntervalNotifierInsert(new MmuIntervalNotifier(), mm, 0, 0x10000, twoPass("a"));
    mmuIntervalNotifierInsert(new MmuIntervalNotifier(), mm, 0, 0x10000, twoPass("b"));
    const inv = range(mm, 0, 0x1000);
    expect(mmuNotifierInvalidateRangeStart(inv)).toBe(0);
    mmuNotifierInvalidateRangeEnd(inv);
    expect(order).toEqual(["start a", "start b", "finish a", "finish b"]);
  });

  it("the checker reports a callback that returns without set_seq", () => {
    const { mm } = hmmRig();
    const sub = new MmuIntervalNotifier();
    mmuIntervalNotifierInsert(sub, mm, 0, 0x10000, { invalidate: () => true });
    const inv = range(mm, 0, 0x1000);
    expect(() => mmuNotifierInvalidateRangeStart(inv)).toThrow(DmaDebugError);
  });

  it("munmap, madvise, mprotect, fork, swap-out, migration, THP split and exit fire the events of the invalidation table", () => {
    const { mm } = hmmRig();
    const r = recorder();
    mmuIntervalNotifierInsert(new MmuIntervalNotifier(), mm, 0, 2 ** 47, r.ops);
    const a = mm.mmap(8 * 4096);
    mm.write(a, new Uint8Array(8 * 4096).fill(1));
    const ev = () => r.calls.map((c) => c.event);
    const take = () => {
      const e = ev();
      r.calls.length = 0;
      return e;
    };
    take();
    mm.madvise(a, 4096, 4);
    expect(take()).toEqual([MmuNotifyEvent.CLEAR]);
    mm.mprotect(a, 4096, 1);
    expect(take()).toEqual([MmuNotifyEvent.PROTECTION_VMA]);
    const child = mm.fork();
    expect(take()).toEqual([MmuNotifyEvent.PROTECTION_PAGE]);
    mm.write(a + 4096, new Uint8Array(4).fill(2));
    // The COW break of a page the child shares fires CLEAR for that page.
    expect(take()).toEqual([MmuNotifyEvent.CLEAR]);
    child.exit();
    // Once the child is gone the parent's pages are its own again: a write reuses them, no event.
    mm.write(a + 5 * 4096, new Uint8Array(4).fill(2));
    expect(take()).toEqual([]);
    expect(mm.swapOut(a + 2 * 4096)).toBe(0);
    expect(take()).toEqual([MmuNotifyEvent.CLEAR]);
    expect(mm.migratePage(a + 3 * 4096)).toBe(0);
    expect(take()).toEqual([MmuNotifyEvent.CLEAR]);
    const moved = mm.mremap(a + 4 * 4096, 4096, 4096);
    expect(take()).toEqual([MmuNotifyEvent.UNMAP]);
    mm.munmap(moved, 4096);
    expect(take()).toEqual([MmuNotifyEvent.UNMAP]);
    const huge = mm.mmap(2 * 1024 * 1024, { hugepage: true });
    mm.write(huge, new Uint8Array(1));
    take();
    expect(mm.splitHugePage(huge)).toBe(0);
    expect(take()).toEqual([MmuNotifyEvent.CLEAR]);
    mm.exit();
    expect(take()[0]).toBe(MmuNotifyEvent.RELEASE);
  });
});
