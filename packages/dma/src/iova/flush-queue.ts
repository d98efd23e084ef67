import { type TimerHandle, type Trace } from "@dmasim/trace";
import type { Iova } from "@dmasim/iommu";
import { Counter } from "../counters.js";
import type { DmaEvent } from "../events.js";
import { IOVA_FQ_SIZE, IOVA_FQ_TIMEOUT_NS } from "./constants.js";
import type { IovaDomain } from "./domain.js";
import { checkCount, checkCpu, IovaError } from "./errors.js";

/** What the flush queue needs from the IOMMU, as callbacks so it does not depend on that package. */
export interface FlushQueueOps {
  /** flush_iotlb_all of the domain: after it returns, no device holds a stale translation. */
  flushIotlbAll(): void;
  /** iommu_put_pages_list: frees page-table pages that unmap detached (an opaque list). */
  releasePtPages(freelist: unknown): void;
}

export interface FlushQueueOptions {
  /** Ring slots per CPU (IOVA_FQ_SIZE, 256); one slot stays empty, as upstream. */
  readonly size?: number;
  /** Virtual nanoseconds from the first queued entry to the timeout flush (IOVA_FQ_TIMEOUT, 10 ms). */
  readonly timeoutNs?: number;
  /** The device whose domain this queue serves, named in the queue's trace events. */
  readonly device?: string;
}

type FlushReason = "timeout" | "full" | "explicit";

/** struct iova_fq of one CPU: a ring of entries in typed arrays plus the opaque freelists. */
class FqRing {
  head = 0;
  tail = 0;
  readonly pfn: Float64Array;
  readonly pages: Float64Array;
  readonly counter: Float64Array;
  readonly freelist: unknown[];
  constructor(readonly size: number) {
    this.pfn = new Float64Array(size);
    this.pages = new Float64Array(size);
    this.counter = new Float64Array(size);
    this.freelist = new Array<unknown>(size).fill(undefined);
  }
  get length(): number {
    return (this.tail - this.head + this.size) % this.size;
  }
}

/**
 * The flush queue of lazy mode (drivers/iommu/dma-iommu.c: iommu_dma_init_fq, queue_iova,
 * fq_flush_iotlb, fq_ring_free, fq_flush_timeout). An unmapped IOVA is not reusable until the IOTLB can
 * no longer hold a translation for it, so instead of invalidating at every unmap the IOVA (and the
 * page-table pages unmap detached) wait in a per-CPU ring, stamped with the number of flushes started
 * so far. An entry is released once a flush that started after it was queued has finished. A full ring
 * forces a flush; otherwise a timer flushes everything 10 ms after the first entry was queued.
 */
export class FlushQueue {
  readonly #trace: Trace;
  readonly #iovad: IovaDomain;
  readonly #ops: FlushQueueOps;
  readonly #rings: FqRing[] = [];
  readonly #timeoutNs: number;
  readonly #device: string | undefined;
  #flushStartCnt = 0;
  #flushFinishCnt = 0;
  #timer: TimerHandle | undefined;
  #timerCpu = 0;

  constructor(trace: Trace, iovad: IovaDomain, ops: FlushQueueOps, options: FlushQueueOptions = {}) {
    trace.counters.declare(Counter);
    const size = options.size ?? IOVA_FQ_SIZE;
    const timeoutNs = options.timeoutNs ?? IOVA_FQ_TIMEOUT_NS;
    if (!Number.isSafeInteger(size) || size < 2 || (size & (size - 1)) !== 0) {
      throw new IovaError("size", size, "a power of two >= 2 ring slots");
    }
    if (!Number.isFinite(timeoutNs) || timeoutNs <= 0) {
      throw new IovaError("timeoutNs", timeoutNs, "a finite timeout > 0 ns");
    }
    this.#trace = trace;
    this.#iovad = iovad;
    this.#ops = ops;
    this.#timeoutNs = timeoutNs;
    this.#device = options.device;
    for (let c = 0; c < iovad.cpus; c++) this.#rings.push(new FqRing(size));
  }

  /** fq_flush_start_cnt: global flushes started. */
  get flushStartCount(): number {
    return this.#flushStartCnt;
  }

  /** fq_flush_finish_cnt: global flushes finished. */
  get flushFinishCount(): number {
    return this.#flushFinishCnt;
  }

  /** Virtual time at which the timeout flush fires, or undefined when no timer is armed. */
  get timerDeadline(): number | undefined {
    return this.#timer?.deadline;
  }

  /** Entries waiting on `cpu`'s ring. */
  pending(cpu: number): number {
    checkCpu(cpu, this.#rings.length);
    return this.#rings[cpu]?.length ?? 0;
  }

  /** Entries waiting on every ring. */
  get pendingTotal(): number {
    let n = 0;
    for (const r of this.#rings) n += r.length;
    return n;
  }

  /**
   * queue_iova: defers the release of [pfn, pfn + pages) and of `freelist` (page-table pages, opaque;
   * undefined when none) until a later global flush has finished.
   */
  queueIova(pfn: number, pages: number, freelist: unknown, cpu: number): void {
    checkCount("pfn", pfn, 1);
    checkCount("pages", pages, 1);
    checkCpu(cpu, this.#rings.length);
    const fq = this.#rings[cpu];
    if (fq === undefined) return;
    // Entries already flushed by another CPU's flush go first, making a full ring less likely.
    this.#ringFree(fq, cpu);
    if ((fq.tail + 1) % fq.size === fq.head) {
      this.#trace.counters.add(Counter.FlushQueueFullFlushes);
      this.#flushIotlb();
      const released = this.#ringFree(fq, cpu);
      this.#emit(cpu, released, "full");
    }
    const idx = fq.tail;
    fq.tail = (idx + 1) % fq.size;
    fq.pfn[idx] = pfn;
    fq.pages[idx] = pages;
    fq.counter[idx] = this.#flushStartCnt;
    fq.freelist[idx] = freelist;
    this.#trace.counters.add(Counter.FlushQueueEntries);
    if (this.#timer === undefined) {
      this.#timerCpu = cpu;
      this.#timer = this.#trace.clock.setTimer(this.#timeoutNs, () => {
        this.#timer = undefined;
        this.#flushAll("timeout", this.#timerCpu);
      });
    }
  }

  /** A global flush now, releasing every entry of every ring and disarming the timer (teardown). */
  flushNow(): void {
    if (this.#timer !== undefined) this.#trace.clock.cancel(this.#timer);
    this.#timer = undefined;
    this.#flushAll("explicit", 0);
  }

  /** fq_flush_timeout: one flush, then every ring frees what it covers. */
  #flushAll(reason: FlushReason, cpu: number): void {
    this.#flushIotlb();
    let released = 0;
    // Releases run on the CPU that runs the flush, so IOVAs land in that CPU's range cache.
    for (const fq of this.#rings) released += this.#ringFree(fq, cpu);
    this.#emit(cpu, released, reason);
  }

  /** fq_flush_iotlb. */
  #flushIotlb(): void {
    this.#flushStartCnt++;
    this.#ops.flushIotlbAll();
    this.#flushFinishCnt++;
    this.#trace.counters.add(Counter.FlushQueueFlushes);
  }

  /** fq_ring_free_locked: releases entries, oldest first, up to the first not yet covered by a flush. */
  #ringFree(fq: FqRing, cpu: number): number {
    const finished = this.#flushFinishCnt;
    let released = 0;
    while (fq.head !== fq.tail) {
      const idx = fq.head;
      if ((fq.counter[idx] ?? 0) >= finished) break;
      const freelist = fq.freelist[idx];
      fq.freelist[idx] = undefined;
      fq.head = (idx + 1) % fq.size;
      if (freelist !== undefined) this.#ops.releasePtPages(freelist);
      const pfn = fq.pfn[idx] ?? 0;
      const pages = fq.pages[idx] ?? 0;
      this.#iovad.freeIovaFast(pfn, pages, cpu);
      released++;
      const events = this.#trace.events;
      if (events.active && this.#device !== undefined) {
        const g = this.#iovad.granule;
        events.emit<DmaEvent>({ type: "flush-queue.release", t: this.#trace.clock.now, device: this.#device, cpu, iova: (pfn * g) as Iova, size: pages * g });
      }
    }
    return released;
  }

  #emit(cpu: number, entries: number, reason: FlushReason): void {
    const events = this.#trace.events;
    if (events.active) {
      const pending = this.pendingTotal;
      const device = this.#device;
      events.emit<DmaEvent>({ type: "flush-queue.flush", t: this.#trace.clock.now, cpu, entries, reason, pending, ...(device === undefined ? {} : { device }) });
    }
  }
}
