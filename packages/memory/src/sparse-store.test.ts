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

  it("keeps a small write to a fresh page in one 64-byte line, not a whole 4 KiB page", () => {
    const s = new SparseStore(1024 * PAGE_SIZE);
    for (let p = 0; p < 1024; p++) s.write(p * PAGE_SIZE, pattern(64, p + 1));
    expect(s.materialisedPages).toBe(1024);
    expect(s.storedBytes).toBe(1024 * 64);
    for (let p = 0; p < 1024; p += 97) {
      const page = s.read(p * PAGE_SIZE, PAGE_SIZE);
      expectBytes(page.subarray(0, 64), pattern(64, p + 1));
      expectBytes(page.subarray(64), new Uint8Array(PAGE_SIZE - 64));
    }
    // A write straddling lines 3 and 4 adds line 4 (page 5 has line 0, then a table of lines); one at
    // 1000 adds line 15, not 5.
    s.write(5 * PAGE_SIZE + 250, pattern(12, 9));
    s.write(5 * PAGE_SIZE + 1000, pattern(4, 10));
    expect(s.storedBytes).toBe(1027 * 64);
    expectBytes(s.read(5 * PAGE_SIZE, 64), pattern(64, 6));
    expectBytes(s.read(5 * PAGE_SIZE + 250, 12), pattern(12, 9));
    expectBytes(s.read(5 * PAGE_SIZE + 320, 680), new Uint8Array(680));
    expectBytes(s.read(5 * PAGE_SIZE + 1000, 4), pattern(4, 10));
  });

  it("a page of one line at any position keeps it through a second line and a fill", () => {
    const s = new SparseStore(4 * PAGE_SIZE);
    const model = new Uint8Array(4 * PAGE_SIZE);
    const put = (at: number, data: Uint8Array): void => {
      s.write(at, data);
      model.set(data, at);
    };
    put(2 * PAGE_SIZE + 63 * 64 + 10, pattern(20, 4)); // the last line of page 2
    expect(s.storedBytes).toBe(64);
    expectBytes(s.read(0, 4 * PAGE_SIZE), model);
    s.fill(2 * PAGE_SIZE + 63 * 64, 16, 0); // zeroing inside the one line changes no memory
    model.fill(0, 2 * PAGE_SIZE + 63 * 64, 2 * PAGE_SIZE + 63 * 64 + 16);
    expect(s.storedBytes).toBe(64);
    put(2 * PAGE_SIZE + 5, pattern(3, 8)); // line 0 joins: the page moves to a table
    expect(s.storedBytes).toBe(128);
    expectBytes(s.read(0, 4 * PAGE_SIZE), model);
    expect(s.materialisedPages).toBe(1);
  });

  it("turns a line page into a whole page past 32 lines, keeping its bytes and reusing its lines", () => {
    const s = new SparseStore(4 * PAGE_SIZE);
    const model = new Uint8Array(4 * PAGE_SIZE);
    for (let l = 0; l < 32; l++) {
      const data = pattern(10, l + 1);
      s.write(PAGE_SIZE + l * 128, data); // lines 0, 2, 4, ... 62 of page 1
      model.set(data, PAGE_SIZE + l * 128);
    }
    expect(s.storedBytes).toBe(32 * 64);
    const nextLine = pattern(3, 42);
    s.write(PAGE_SIZE + 64, nextLine);
    model.set(nextLine, PAGE_SIZE + 64);
    expect(s.storedBytes).toBe(PAGE_SIZE);
    expectBytes(s.read(0, 4 * PAGE_SIZE), model);
    // The freed lines serve the next line page, and read as zeros where not written.
    s.write(3 * PAGE_SIZE + 100, pattern(5, 7));
    expect(s.storedBytes).toBe(PAGE_SIZE + 64);
    expectBytes(s.read(3 * PAGE_SIZE, 64).subarray(0, 36), new Uint8Array(36));
    expectBytes(s.read(3 * PAGE_SIZE + 100, 5), pattern(5, 7));
    expect(s.materialisedPages).toBe(2);
  });

  it("a fresh write of more than 32 lines' worth takes a whole page at once", () => {
    const s = new SparseStore(2 * PAGE_SIZE);
    s.write(0, pattern(32 * 64 + 1, 3));
    expect(s.storedBytes).toBe(PAGE_SIZE);
    s.fill(PAGE_SIZE, 2048, 0x11); // exactly 32 lines: stays in lines
    expect(s.storedBytes).toBe(PAGE_SIZE + 2048);
    s.fill(PAGE_SIZE, PAGE_SIZE, 0); // zeroing a line page keeps it and allocates nothing
    expect(s.storedBytes).toBe(PAGE_SIZE + 2048);
    expectBytes(s.read(PAGE_SIZE, PAGE_SIZE), new Uint8Array(PAGE_SIZE));
  });

  it("reads back exactly the last bytes written with small, line-sized accesses (property)", () => {
    const size = 8 * PAGE_SIZE;
    const op = fc.record({
      at: fc.integer({ min: 0, max: size - 1 }),
      len: fc.integer({ min: 0, max: 700 }),
      seed: fc.integer({ min: 1, max: 1000 }),
      fill: fc.option(fc.integer({ min: 0, max: 255 }), { nil: undefined }),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), fc.integer({ min: 0, max: size - 1 }), (ops, probe) => {
        const s = new SparseStore(size);
        const model = new Uint8Array(size);
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
        }
        expectBytes(s.read(0, size), model);
        // The one-page fast path of readInto agrees with the general copy.
        const n = Math.min(64, PAGE_SIZE - (probe % PAGE_SIZE));
        const dst = new Uint8Array(n).fill(0xee);
        s.readInto(probe, dst);
        expectBytes(dst, model.subarray(probe, probe + n));
        expect(s.storedBytes).toBeLessThanOrEqual(s.materialisedPages * PAGE_SIZE);
      }),
      { numRuns: 150 },
    );
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
