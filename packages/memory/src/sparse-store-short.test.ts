import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { PAGE_SIZE } from "./addresses.js";
import { AddressError } from "./errors.js";
import { kReadIntoChecked, kWriteChecked } from "./internal.js";
import { SparseStore } from "./sparse-store.js";

// The short-access seam of SparseStore (readInto and write of at most 64 bytes copied byte by byte, a
// write into a line the page has without scanning its line table) against the checked path it skips.

const PAGES = 6;
const SIZE = PAGES * PAGE_SIZE;

type Op = { kind: "write"; offset: number; len: number; seed: number } | { kind: "read"; offset: number; len: number };

/** Offsets near page and line edges (where the seam declines), anywhere, and out of range. */
const offset = fc.oneof(
  fc.integer({ min: 0, max: SIZE }),
  fc.tuple(fc.integer({ min: 0, max: PAGES }), fc.integer({ min: -70, max: 70 })).map(([p, d]) => p * PAGE_SIZE + d),
  fc.tuple(fc.integer({ min: 0, max: PAGES * 64 }), fc.integer({ min: -70, max: 70 })).map(([l, d]) => l * 64 + d),
  fc.constantFrom(-1, 0.5, SIZE - 1, SIZE + 1, Number.MAX_SAFE_INTEGER + 1),
);
const len = fc.oneof(fc.integer({ min: 0, max: 72 }), fc.constantFrom(1, 8, 64, 65, 256, 300));
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("write" as const), offset, len, seed: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant("read" as const), offset, len }),
);

function bytesOf(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (seed + i * 37) & 0xff;
  return b;
}

/** The first index where `a` and `b` differ, or -1 (a deep equal of 24 KiB is slow in a property). */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** Runs `f`, returning the error it threw (class and message) or undefined. */
function outcome(f: () => void): string | undefined {
  try {
    f();
    return undefined;
  } catch (err) {
    return err instanceof AddressError ? `AddressError ${err.message}` : `other ${String(err)}`;
  }
}

describe("SparseStore short-access seam", () => {
  it("gives the same bytes, pages, stored bytes and errors as the checked path (fast-check)", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const fast = new SparseStore(SIZE);
        const checked = new SparseStore(SIZE);
        for (const o of ops) {
          if (o.kind === "write") {
            const b = bytesOf(o.len, o.seed);
            const a = outcome(() => { fast.write(o.offset, b); });
            const c = outcome(() => { checked[kWriteChecked](o.offset, b); });
            expect(a).toBe(c);
          } else {
            const da = new Uint8Array(o.len).fill(0xee);
            const dc = new Uint8Array(o.len).fill(0xee);
            const a = outcome(() => { fast.readInto(o.offset, da); });
            const c = outcome(() => { checked[kReadIntoChecked](o.offset, dc); });
            expect(a).toBe(c);
            expect(da).toEqual(dc);
          }
          expect(fast.materialisedPages).toBe(checked.materialisedPages);
          expect(fast.storedBytes).toBe(checked.storedBytes);
        }
        expect(firstDifference(fast.read(0, SIZE), checked.read(0, SIZE))).toBe(-1);
      }),
      { numRuns: 300 },
    );
  });

  it("reads into a view at an offset of a larger buffer and leaves the bytes around it alone", () => {
    const s = new SparseStore(SIZE);
    s.write(PAGE_SIZE + 10, bytesOf(8, 5)); // a line page
    s.write(3 * PAGE_SIZE, bytesOf(PAGE_SIZE, 9)); // a whole page
    const outer = new Uint8Array(80).fill(0xcc);
    s.readInto(PAGE_SIZE + 10, outer.subarray(3, 11));
    expect(outer.subarray(3, 11)).toEqual(bytesOf(8, 5));
    expect(outer[2]).toBe(0xcc);
    expect(outer[11]).toBe(0xcc);
    s.readInto(3 * PAGE_SIZE + 100, outer.subarray(5, 69));
    expect(outer.subarray(5, 69)).toEqual(bytesOf(PAGE_SIZE, 9).subarray(100, 164));
    expect(outer[69]).toBe(0xcc);
    // A short write from a view lands exactly there, in a line the page already has.
    s.write(PAGE_SIZE + 12, outer.subarray(40, 44));
    expect(s.read(PAGE_SIZE + 10, 8)).toEqual(Uint8Array.of(...bytesOf(8, 5).subarray(0, 2), ...outer.subarray(40, 44), ...bytesOf(8, 5).subarray(6, 8)));
    expect(s.storedBytes).toBe(PAGE_SIZE + 64);
  });
  it("moves every byte value exactly through short accesses of whole and line pages", () => {
    // Bytes above 0x7f and lengths that are no multiple of 4 or 8 (the copy loop's tail) come out as they
    // went in, through the seam and through the checked path, into a view at an offset.
    const s = new SparseStore(SIZE);
    s.write(2 * PAGE_SIZE, new Uint8Array(PAGE_SIZE)); // a whole page
    for (const [base, label] of [[2 * PAGE_SIZE, "whole"], [4 * PAGE_SIZE, "line"]] as const) {
      for (let start = 0; start < 256; start += 61) {
        for (const n of [64, 63, 61, 4, 3, 1]) {
          const b = new Uint8Array(n);
          for (let i = 0; i < n; i++) b[i] = (start + i * 13) & 0xff;
          const at = base + 64 * (start % 8);
          s.write(at, b);
          const out = new Uint8Array(n + 2).fill(0xa5);
          s.readInto(at, out.subarray(1, n + 1));
          expect([label, ...out]).toEqual([label, 0xa5, ...b, 0xa5]);
          const checked = new Uint8Array(n);
          s[kReadIntoChecked](at, checked);
          expect(checked).toEqual(b);
        }
      }
    }
    expect(s.storedBytes).toBe(PAGE_SIZE + 5 * 64); // five lines: starts 0, 61, 122, 183, 244 modulo 8
  });
  it("keeps each page's bytes when accesses alternate between leaves of the page index (fast-check)", () => {
    // The index caches its last two leaves (2 MiB each): accesses that alternate between two or three
    // leaves, as a device's buffer and its staging page do, must still find every page's own entry.
    const LEAF = 512 * PAGE_SIZE;
    const size = 4 * LEAF;
    const at = fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: PAGE_SIZE - 64 })).map(([leaf, page, off]) => leaf * LEAF + page * PAGE_SIZE + off);
    const access = fc.record({ at, len: fc.integer({ min: 1, max: 64 }), seed: fc.integer({ min: 1, max: 255 }), read: fc.boolean() });
    fc.assert(
      fc.property(fc.array(access, { maxLength: 80 }), (ops) => {
        const s = new SparseStore(size);
        const model = new Uint8Array(size);
        for (const o of ops) {
          if (o.read) {
            const got = new Uint8Array(o.len);
            s.readInto(o.at, got);
            expect(firstDifference(got, model.subarray(o.at, o.at + o.len))).toBe(-1);
          } else {
            const b = bytesOf(o.len, o.seed);
            s.write(o.at, b);
            model.set(b, o.at);
          }
        }
        for (const o of ops) expect(firstDifference(s.read(o.at, 64), model.subarray(o.at, o.at + 64))).toBe(-1);
      }),
      { numRuns: 200 },
    );
  });
});
