import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { PAGE_SIZE, TiB } from "./addresses.js";
import { AddressError } from "./errors.js";
import { SparseStore } from "./sparse-store.js";
import { expectBytes, pattern } from "./test-fixtures.js";

describe("SparseStore", () => {
  it("reads zeros where nothing was written, and costs no page for it", () => {
    const s = new SparseStore(1 * TiB);
    expectBytes(s.read(TiB - 8192, 8192), new Uint8Array(8192));
    expect(s.materialisedPages).toBe(0);
  });

  it("materialises only the pages a write touches, and reads the bytes back", () => {
    const s = new SparseStore(1 * TiB);
    const data = pattern(100);
    s.write(3 * PAGE_SIZE - 50, data); // straddles pages 2 and 3
    expect(s.materialisedPages).toBe(2);
    expect(s.isMaterialised(2 * PAGE_SIZE)).toBe(true);
    expect(s.isMaterialised(4 * PAGE_SIZE)).toBe(false);
    expectBytes(s.read(3 * PAGE_SIZE - 50, 100), data);
    // The rest of both pages is still zero.
    const around = s.read(2 * PAGE_SIZE, 2 * PAGE_SIZE);
    expectBytes(around.subarray(0, PAGE_SIZE - 50), new Uint8Array(PAGE_SIZE - 50));
    expectBytes(around.subarray(PAGE_SIZE + 50), new Uint8Array(PAGE_SIZE - 50));
  });

  it("keeps pages apart when they are written out of order and far apart", () => {
    const s = new SparseStore(1 * TiB);
    const far = TiB - PAGE_SIZE;
    s.write(far, pattern(PAGE_SIZE, 7));
    s.write(0, pattern(PAGE_SIZE, 8));
    s.write(PAGE_SIZE * 1000, pattern(PAGE_SIZE, 9));
    expectBytes(s.read(far, PAGE_SIZE), pattern(PAGE_SIZE, 7));
    expectBytes(s.read(0, PAGE_SIZE), pattern(PAGE_SIZE, 8));
    expectBytes(s.read(PAGE_SIZE * 1000, PAGE_SIZE), pattern(PAGE_SIZE, 9));
    expect(s.materialisedPages).toBe(3);
  });

  it("reads a multi-page run that spans slabs and unwritten pages", () => {
    const s = new SparseStore(64 * 1024 * 1024);
    const big = pattern(300 * PAGE_SIZE + 123, 3);
    s.write(5, big);
    const gapAt = 400 * PAGE_SIZE;
    s.write(gapAt + PAGE_SIZE, pattern(PAGE_SIZE, 4)); // page gapAt stays unwritten
    expectBytes(s.read(5, big.length), big);
    const mixed = s.read(gapAt, 2 * PAGE_SIZE);
    expectBytes(mixed.subarray(0, PAGE_SIZE), new Uint8Array(PAGE_SIZE));
    expectBytes(mixed.subarray(PAGE_SIZE), pattern(PAGE_SIZE, 4));
  });

  it("fill with 0 leaves unwritten pages unmaterialised; a non-zero fill materialises them", () => {
    const s = new SparseStore(16 * PAGE_SIZE);
    s.write(PAGE_SIZE, pattern(PAGE_SIZE));
    s.fill(0, 4 * PAGE_SIZE, 0);
    expect(s.materialisedPages).toBe(1);
    expectBytes(s.read(PAGE_SIZE, PAGE_SIZE), new Uint8Array(PAGE_SIZE));
    s.fill(10, 5, 0xab);
    expect(s.materialisedPages).toBe(2);
    expect([...s.read(9, 7)]).toEqual([0, 0xab, 0xab, 0xab, 0xab, 0xab, 0]);
  });

  it("rejects out-of-range and malformed arguments without changing anything", () => {
    const s = new SparseStore(2 * PAGE_SIZE);
    expect(() => new SparseStore(-1)).toThrow(AddressError);
    expect(() => { s.write(2 * PAGE_SIZE - 1, new Uint8Array(2)); }).toThrow(/offset \+ len \(2\) <= the store size 8192/);
    expect(() => s.read(-1, 1)).toThrow(/offset = -1/);
    expect(() => s.read(0.5, 1)).toThrow(AddressError);
    expect(() => s.read(0, -1)).toThrow(/len = -1/);
    expect(() => { s.fill(0, 1, 256); }).toThrow(/value = 0x100/);
    expect(() => { s.fill(0, 1, 1.5); }).toThrow(AddressError);
    expect(s.materialisedPages).toBe(0);
  });

  it("reads back exactly the last bytes written to each offset (property)", () => {
    const size = 40 * PAGE_SIZE;
    const op = fc.record({
      at: fc.integer({ min: 0, max: size - 1 }),
      len: fc.integer({ min: 0, max: 3 * PAGE_SIZE }),
      seed: fc.integer({ min: 1, max: 1000 }),
      fill: fc.option(fc.integer({ min: 0, max: 255 }), { nil: undefined }),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 12 }), (ops) => {
        const s = new SparseStore(size);
        const model = new Uint8Array(size);
        const touched = new Set<number>();
        for (const o of ops) {
          const len = Math.min(o.len, size - o.at);
          if (o.fill === undefined) {
            const data = pattern(len, o.seed);
            s.write(o.at, data);
            model.set(data, o.at);
          } else {
            s.fill(o.at, len, o.fill);
            model.fill(o.fill, o.at, o.at + len);
          }
          if (o.fill !== 0 && len > 0) for (let p = Math.floor(o.at / PAGE_SIZE); p * PAGE_SIZE < o.at + len; p++) touched.add(p);
        }
        expectBytes(s.read(0, size), model);
        expect(s.materialisedPages).toBe(touched.size);
      }),
      { numRuns: 60 },
    );
  });
});
