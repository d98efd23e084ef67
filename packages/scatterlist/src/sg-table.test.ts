import { describe, expect, it } from "vitest";
import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import { Trace } from "@dmasim/trace";
import { Counter } from "@dmasim/dma";
import {
  SG_ENTRY_BYTES,
  ScatterlistError,
  forEachSg,
  forEachSgtableDmaSg,
  forEachSgtableSg,
  sgAllocTable,
  sgAllocTableFromPages,
  sgAllocTableFromPagesSegment,
  sgChainEntries,
  sgFreeTable,
  sgOffset,
  sgPage,
  sgPhys,
  sgSetPage,
  sgSetPhys,
} from "./index.js";

describe("sgAllocTable / sgFreeTable", () => {
  it("counts 32 bytes per entry plus the chain links of page-sized chunks", () => {
    const trace = new Trace();
    const small = sgAllocTable(trace, 16);
    expect(small.bookkeepingBytes).toBe(16 * SG_ENTRY_BYTES);
    // 4096 entries: chunks of 127 entries + 1 chain link, the last chunk of up to 128 entries.
    expect(sgChainEntries(128)).toBe(0);
    expect(sgChainEntries(129)).toBe(1);
    expect(sgChainEntries(4096)).toBe(32);
    const big = sgAllocTable(trace, 4096);
    expect(big.bookkeepingBytes).toBe((4096 + 32) * 32);
    expect(trace.counters.get(Counter.DmaBookkeepingBytesAllocated)).toBe(16 * 32 + 4128 * 32);
    sgFreeTable(small);
    expect(trace.counters.get(Counter.DmaBookkeepingBytesFreed)).toBe(16 * 32);
    expect(small.freed).toBe(true);
  });

  it("keeps entries in typed-array columns and reports page, offset and physical address", () => {
    const t = sgAllocTable(new Trace(), 3);
    sgSetPage(t, 0, 10, 100, 24);
    sgSetPhys(t, 1, unsafePhysAddr(0x5000 + 7), PAGE_SIZE);
    expect(t.phys).toBeInstanceOf(Float64Array);
    expect(sgPhys(t, 0)).toBe(10 * PAGE_SIZE + 24);
    expect(sgPage(t, 1)).toBe(5);
    expect(sgOffset(t, 1)).toBe(7);
    const seen: number[][] = [];
    forEachSgtableSg(t, (i, phys, len) => {
      seen.push([i, phys, len]);
      return true;
    });
    expect(seen).toEqual([
      [0, 40984, 100],
      [1, 0x5007, PAGE_SIZE],
      [2, 0, 0],
    ]);
    let visits = 0;
    forEachSg(t, 3, () => {
      visits++;
      return false;
    });
    expect(visits).toBe(1);
    // Unmapped: nents = orig_nents, DMA fields zero.
    const dma: number[] = [];
    forEachSgtableDmaSg(t, (_i, a, l) => {
      dma.push(a, l);
      return true;
    });
    expect(dma).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it("refuses bad input with a ScatterlistError and changes nothing", () => {
    const trace = new Trace();
    const t = sgAllocTable(trace, 2);
    sgSetPhys(t, 0, unsafePhysAddr(0x1000), 10);
    expect(() => { sgSetPhys(t, 2, unsafePhysAddr(0x2000), 10); }).toThrow(/index = 0x2 is invalid: expected an entry index from 0 to 1/);
    expect(() => { sgSetPhys(t, 0, unsafePhysAddr(0x2000), -1); }).toThrow(ScatterlistError);
    expect(() => { sgSetPage(t, 0, 1.5, 10, 0); }).toThrow(/pfn = 1.5/);
    expect(() => { sgSetPhys(t, 0, unsafePhysAddr(2 ** 53 - 4), 10); }).toThrow(/below 2\^53/);
    expect(sgPhys(t, 0)).toBe(0x1000);
    expect(() => sgAllocTable(trace, 0)).toThrow(/nents = 0x0/);
    sgFreeTable(t);
    expect(() => { sgFreeTable(t); }).toThrow(/freed sg_table/);
    expect(() => { sgSetPhys(t, 0, unsafePhysAddr(0), 1); }).toThrow(/freed/);
    expect(trace.counters.get(Counter.DmaBookkeepingBytesFreed)).toBe(64);
  });
});

describe("sgAllocTableFromPages(Segment)", () => {
  it("merges physically contiguous pages into one entry", () => {
    const t = sgAllocTableFromPages(new Trace(), [10, 11, 12, 20, 21, 5], 6, 0, 6 * PAGE_SIZE);
    expect(t.origNents).toBe(3);
    expect(Array.from(t.phys)).toEqual([10 * PAGE_SIZE, 20 * PAGE_SIZE, 5 * PAGE_SIZE]);
    expect(Array.from(t.length)).toEqual([3 * PAGE_SIZE, 2 * PAGE_SIZE, PAGE_SIZE]);
  });

  it("applies the offset to the first entry and the size to the last", () => {
    const t = sgAllocTableFromPages(new Trace(), [10, 11, 30], 3, 100, 2 * PAGE_SIZE);
    expect(Array.from(t.phys)).toEqual([10 * PAGE_SIZE + 100, 30 * PAGE_SIZE]);
    expect(Array.from(t.length)).toEqual([2 * PAGE_SIZE - 100, 100]);
  });

  it("starts a new entry when the segment limit (rounded down to pages) is reached", () => {
    const pages = Array.from({ length: 10 }, (_, i) => 100 + i);
    const t = sgAllocTableFromPagesSegment(new Trace(), pages, 10, 0, 10 * PAGE_SIZE, 4 * PAGE_SIZE + 100);
    expect(Array.from(t.length)).toEqual([4 * PAGE_SIZE, 4 * PAGE_SIZE, 2 * PAGE_SIZE]);
    expect(Array.from(t.phys)).toEqual([100 * PAGE_SIZE, 104 * PAGE_SIZE, 108 * PAGE_SIZE]);
  });

  it("refuses impossible requests before allocating anything", () => {
    const trace = new Trace();
    expect(() => sgAllocTableFromPages(trace, [1, 2], 2, PAGE_SIZE, 10)).toThrow(/offset = 0x1000/);
    expect(() => sgAllocTableFromPages(trace, [1, 2], 2, 0, 3 * PAGE_SIZE)).toThrow(/size = 0x3000 is invalid: expected 1 to 8192/);
    expect(() => sgAllocTableFromPages(trace, [1, 2], 3, 0, 10)).toThrow(/nPages = 0x3/);
    expect(() => sgAllocTableFromPagesSegment(trace, [1, 2], 2, 0, 10, 100)).toThrow(/maxSegment = 0x64/);
    expect(() => sgAllocTableFromPages(trace, [1, -2], 2, 0, 10)).toThrow(/pages\[1\] = -2/);
    expect(trace.counters.get(Counter.DmaBookkeepingBytesAllocated)).toBe(0);
  });
});
