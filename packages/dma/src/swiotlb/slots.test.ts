import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { IO_TLB_SEGSIZE, IO_TLB_SIZE } from "./constants.js";
import { SlotTable, type SlotRequest } from "./slots.js";

describe("SlotTable", () => {
  it("starts with free runs counting down to each segment end", () => {
    const t = new SlotTable(256, 1);
    expect(t.list[0]).toBe(128);
    expect(t.list[127]).toBe(1);
    expect(t.list[128]).toBe(128);
  });

  it("renumbers the free run in front of an allocation and merges on release", () => {
    const t = new SlotTable(256, 1);
    const req: SlotRequest = { origAddr: 0, allocSize: 4 * IO_TLB_SIZE, allocAlignMask: 0, minAlignMask: 0, segBoundaryMask: undefined };
    const a = t.search(0, req, 0);
    expect(a).toBe(0);
    const b = t.search(0, { ...req, allocSize: IO_TLB_SIZE }, 0);
    expect(b).toBe(4);
    t.release(0, 4);
    expect(Array.from(t.list.subarray(0, 6))).toEqual([4, 3, 2, 1, 0, 123]);
    t.release(4, 1);
    expect(t.list[0]).toBe(128);
    expect(t.used).toBe(0);
    expect(t.segFree[0]).toBe(IO_TLB_SEGSIZE);
  });

  // The segment skip is an optimisation only: it must pick exactly the slot upstream's walk picks.
  it("picks the same slots with and without skipping full segments (property)", () => {
    const op = fc.oneof(
      fc.record({
        kind: fc.constant("map" as const),
        size: fc.integer({ min: 1, max: 300 * 1024 }),
        orig: fc.integer({ min: 0, max: 1 << 24 }),
        allocAlignMask: fc.constantFrom(0, 0xfff, 0x3fff, 0xffff),
        minAlignMask: fc.constantFrom(0, 0xfff, 0x7ff, 0xffff),
        boundary: fc.constantFrom(undefined, 0xffff, 0xfffff),
        area: fc.nat(3),
      }),
      fc.record({ kind: fc.constant("unmap" as const), pick: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
        const fast = new SlotTable(1024, 4);
        const ref = new SlotTable(1024, 4, false);
        const live: [number, number][] = [];
        for (const o of ops) {
          if (o.kind === "map") {
            const req: SlotRequest = {
              origAddr: o.orig,
              allocSize: o.size,
              allocAlignMask: o.allocAlignMask,
              minAlignMask: o.minAlignMask,
              segBoundaryMask: o.boundary,
            };
            const a = fast.search(o.area, req, 0x4000000);
            const b = ref.search(o.area, req, 0x4000000);
            expect(a).toBe(b);
            if (a >= 0) live.push([a, Math.ceil(o.size / IO_TLB_SIZE)]);
          } else if (live.length > 0) {
            const [index, n] = live.splice(o.pick % live.length, 1)[0]!;
            fast.release(index, n);
            ref.release(index, n);
          }
        }
        expect(fast.list).toEqual(ref.list);
      }),
      { numRuns: 150 },
    );
  });
});
