import { describe, expect, it } from "vitest";
import { IovaTree } from "./tree.js";

describe("IovaTree", () => {
  it("keeps ranges ordered, balanced and with correct gap bounds through inserts and removes", () => {
    const t = new IovaTree(4);
    const nodes: number[] = [];
    for (let i = 0; i < 200; i++) nodes.push(t.insert(i * 10 + 5, i * 10 + 7));
    expect(t.check()).toBe("");
    expect(t.size).toBe(200);
    expect(t.height).toBeLessThanOrEqual(Math.ceil(1.45 * Math.log2(202)));
    for (let i = 0; i < 200; i += 3) t.remove(nodes[i]!);
    expect(t.check()).toBe("");
    expect(t.size).toBe(200 - 67);
    expect(t.find(5)).toBe(0);
    expect(t.lo[t.find(16)]).toBe(15);
  });

  it("finds the highest aligned fit between the bounds", () => {
    const t = new IovaTree();
    t.insert(100, 100); // gap [0, 100) below it
    t.insert(103, 109); // gap [101, 103)
    t.insert(130, 200); // gap [110, 130)
    // Unaligned two pages: highest is just below the anchor's gap bound.
    expect(t.highestFit(2, 0, 1, 1000)).toBe(998);
    expect(t.highestFit(2, 0, 1, 130)).toBe(128);
    expect(t.highestFit(2, 0, 1, 110)).toBe(101);
    // Aligned to 4: [101, 103) is too small once aligned, [110, 130) gives 124.
    expect(t.highestFit(4, 2, 1, 130)).toBe(124);
    expect(t.highestFit(4, 2, 1, 112)).toBe(96);
    // Lower bound excludes gaps below it.
    expect(t.highestFit(20, 0, 111, 130)).toBe(-1);
    expect(t.highestFit(20, 0, 110, 130)).toBe(110);
    // 8 pages aligned to 8 in [110, 130): 120 fits, 112 also; highest first.
    expect(t.highestFit(8, 3, 1, 130)).toBe(120);
  });

  it("adds bound arrays for a new order on first use and keeps them exact", () => {
    const t = new IovaTree();
    for (let i = 0; i < 50; i++) t.insert(i * 37 + 3, i * 37 + 20);
    expect(t.highestFit(16, 4, 1, 37 * 50)).toBeGreaterThan(0);
    expect(t.check()).toBe("");
    t.insert(5000, 5001);
    expect(t.check()).toBe("");
  });

  it("clear returns to the anchor alone", () => {
    const t = new IovaTree();
    t.insert(1, 2);
    t.clear();
    expect(t.size).toBe(0);
    expect(t.check()).toBe("");
    expect(t.highestFit(1, 0, 1, 10)).toBe(9);
  });
});
