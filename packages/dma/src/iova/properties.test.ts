import { Trace } from "@dmasim/trace";
import { Counter } from "../counters.js";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { IovaDomain } from "./domain.js";
import { FlushQueue } from "./flush-queue.js";

/**
 * A literal, linear-time transcription of upstream's allocator walk (drivers/iommu/iova.c:
 * __alloc_and_insert_iova_range, __cached_rbnode_insert_update, __cached_rbnode_delete_update) over a
 * sorted array, used by the property tests as the oracle for IovaDomain's tree.
 */
interface Node {
  lo: number;
  hi: number;
}

class ReferenceIovad {
  readonly nodes: Node[];
  readonly anchor: Node = { lo: Number.MAX_SAFE_INTEGER, hi: Number.MAX_SAFE_INTEGER };
  cached: Node;
  cached32: Node;
  max32: number;
  readonly dma32: number;

  constructor(
    readonly startPfn: number,
    granule = 4096,
  ) {
    this.nodes = [this.anchor];
    this.cached = this.anchor;
    this.cached32 = this.anchor;
    this.dma32 = 2 ** 32 / granule;
    this.max32 = this.dma32;
  }

  alloc(size: number, limitPfn: number, aligned: boolean): number {
    let align = 1;
    if (aligned) while (align < size) align *= 2;
    const limit = limitPfn + 1;
    let high = limit;
    let low = this.startPfn;
    if (limit <= this.dma32 && size >= this.max32) return -1;
    const start = limit <= this.dma32 ? this.cached32 : this.cached;
    let curr = this.nodes.indexOf(start);
    const retryPfn = start.hi;
    let newPfn = 0;
    for (;;) {
      do {
        high = Math.min(high, this.nodes[curr]!.lo);
        newPfn = Math.floor((high - size) / align) * align;
        curr--;
      } while (curr >= 0 && newPfn <= this.nodes[curr]!.hi && newPfn >= low);
      if (high < size || newPfn < low) {
        if (low === this.startPfn && retryPfn < limit) {
          high = limit;
          low = retryPfn + 1;
          curr = this.nodes.length - 1;
          continue;
        }
        this.max32 = size;
        return -1;
      }
      break;
    }
    const node = { lo: newPfn, hi: newPfn + size - 1 };
    let i = 0;
    while (this.nodes[i]!.lo < node.lo) i++;
    this.nodes.splice(i, 0, node);
    if (node.hi < this.dma32) this.cached32 = node;
    else this.cached = node;
    return newPfn;
  }

  free(pfn: number): boolean {
    const i = this.nodes.findIndex((n) => n !== this.anchor && n.lo <= pfn && pfn <= n.hi);
    if (i < 0) return false;
    const node = this.nodes[i]!;
    const next = this.nodes[i + 1]!;
    if (node === this.cached32 || (node.hi < this.dma32 && node.lo >= this.cached32.lo)) this.cached32 = next;
    if (node.lo < this.dma32) this.max32 = this.dma32;
    if (node.lo >= this.cached.lo) this.cached = next;
    this.nodes.splice(i, 1);
    return true;
  }
}

const G = 4096;
const PFN_4G = 2 ** 32 / G;

type Op =
  | { kind: "alloc"; size: number; limit: number; aligned: boolean }
  | { kind: "free"; pick: number }
  | { kind: "reserve"; lo: number; len: number };

// Limits near 4 GiB exercise both cached nodes and max32_alloc_size; small spaces force failures.
const limitArb = fc.oneof(
  fc.integer({ min: 1, max: 300 }),
  fc.integer({ min: PFN_4G - 200, max: PFN_4G + 200 }),
);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("alloc" as const), size: fc.integer({ min: 1, max: 40 }), limit: limitArb, aligned: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("free" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("reserve" as const), lo: fc.integer({ min: 1, max: 300 }), len: fc.integer({ min: 1, max: 20 }) }) },
);

describe("IovaDomain properties", () => {
  it("gives exactly the addresses of upstream's linear walk, never overlaps, respects limits and alignment", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.array(opArb, { maxLength: 120 }), (startPfn, ops) => {
        const d = new IovaDomain(new Trace(), { granule: G, startPfn });
        const ref = new ReferenceIovad(startPfn, G);
        const live: number[] = [];
        for (const op of ops) {
          if (op.kind === "alloc") {
            const got = d.allocIova(op.size, op.limit, op.aligned);
            const want = ref.alloc(op.size, op.limit, op.aligned);
            expect(got?.pfnLo ?? -1).toBe(want);
            expect(d.max32AllocSize).toBe(ref.max32);
            if (got !== undefined) {
              expect(got.pfnHi).toBeLessThanOrEqual(op.limit);
              expect(got.pfnLo).toBeGreaterThanOrEqual(startPfn);
              if (op.aligned) expect(got.pfnLo % 2 ** Math.ceil(Math.log2(op.size))).toBe(0);
              live.push(got.pfnLo);
            }
          } else if (op.kind === "free") {
            if (live.length === 0) continue;
            const [pfn] = live.splice(op.pick % live.length, 1);
            expect(d.freeIova(pfn!)).toBe(ref.free(pfn!));
          } else {
            d.reserveIova(op.lo, op.lo + op.len - 1);
            // The oracle has no reserve: mirror the covered stretches as its nodes.
            ref.nodes.length = 0;
            for (const r of d.ranges()) ref.nodes.push({ lo: r.pfnLo, hi: r.pfnHi });
            ref.nodes.push(ref.anchor);
            ref.cached = ref.anchor;
            ref.cached32 = ref.anchor;
            d.putIovaDomain();
            for (const n of ref.nodes) if (n !== ref.anchor) d.reserveIova(n.lo, n.hi);
            ref.max32 = d.max32AllocSize;
          }
          const ranges = d.ranges();
          for (let i = 1; i < ranges.length; i++) expect(ranges[i]!.pfnLo).toBeGreaterThan(ranges[i - 1]!.pfnHi);
        }
        expect(d.checkTree()).toBe("");
        for (const pfn of live) d.freeIova(pfn);
        // Only reservations may remain.
        for (const r of d.ranges()) expect(live).not.toContain(r.pfnLo);
      }),
      { numRuns: 300 },
    );
  });

  it("alloc_iova_fast / free_iova_fast on several CPUs: no overlap, below limit, aligned; everything back to empty", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ alloc: fc.boolean(), size: fc.integer({ min: 1, max: 70 }), limit: fc.integer({ min: 64, max: 2000 }), cpu: fc.integer({ min: 0, max: 2 }), pick: fc.nat() }),
          { maxLength: 300 },
        ),
        (ops) => {
          const d = new IovaDomain(new Trace(), { granule: G, startPfn: 1, cpus: 3 });
          const live: { pfn: number; size: number }[] = [];
          for (const op of ops) {
            if (op.alloc || live.length === 0) {
              const pfn = d.allocIovaFast(op.size, op.limit, true, op.cpu);
              if (pfn === 0) continue;
              const rounded = op.size < 32 ? 2 ** Math.ceil(Math.log2(op.size)) : op.size;
              expect(pfn + rounded - 1).toBeLessThanOrEqual(op.limit);
              expect(pfn % 2 ** Math.ceil(Math.log2(op.size))).toBe(0);
              for (const l of live) expect(pfn + rounded <= l.pfn || l.pfn + l.size <= pfn).toBe(true);
              live.push({ pfn, size: rounded });
            } else {
              const [l] = live.splice(op.pick % live.length, 1);
              d.freeIovaFast(l!.pfn, l!.size, op.cpu);
            }
          }
          for (const l of live) d.freeIovaFast(l.pfn, l.size, 0);
          d.flushRcaches();
          expect(d.liveRanges).toBe(0);
          expect(d.ranges()).toEqual([]);
          expect(d.checkTree()).toBe("");
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("FlushQueue properties", () => {
  it("never releases an IOVA before a flush that started after it was queued; flushNow releases all", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ kind: fc.constant("queue" as const), cpu: fc.integer({ min: 0, max: 1 }) }),
            fc.record({ kind: fc.constant("tick" as const), ns: fc.integer({ min: 0, max: 6_000_000 }) }),
          ),
          { maxLength: 700 },
        ),
        (ops) => {
          const trace = new Trace();
          const iovad = new IovaDomain(trace, { granule: G, startPfn: 1, cpus: 2 });
          let flushesStarted = 0;
          let flushesFinished = 0;
          const queuedAt = new Map<number, number>();
          const fq = new FlushQueue(trace, iovad, {
            flushIotlbAll: () => {
              flushesStarted++;
              flushesFinished++;
            },
            releasePtPages: (id) => {
              const at = queuedAt.get(id as number);
              // Released only after a flush that started after queueing has finished.
              expect(at).toBeDefined();
              expect(flushesFinished).toBeGreaterThan(at!);
              queuedAt.delete(id as number);
            },
          });
          let next = 0;
          for (const op of ops) {
            if (op.kind === "tick") {
              trace.clock.advance(op.ns);
              continue;
            }
            const pfn = iovad.allocIovaFast(1, 1 << 20, true, op.cpu);
            const id = next++;
            queuedAt.set(id, flushesStarted);
            fq.queueIova(pfn, 1, id, op.cpu);
          }
          expect(fq.pendingTotal).toBe(queuedAt.size);
          fq.flushNow();
          expect(queuedAt.size).toBe(0);
          expect(fq.pendingTotal).toBe(0);
          expect(trace.counters.get(Counter.FlushQueueEntries)).toBe(next);
          iovad.flushRcaches();
          expect(iovad.liveRanges).toBe(0);
        },
      ),
      { numRuns: 100 },
    );
  });
});
