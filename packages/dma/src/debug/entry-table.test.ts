import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { DebugEntryTable, INFO_CHECKED, TYPE_COHERENT, TYPE_PHY, TYPE_SG } from "./entry-table.js";

interface Model {
  readonly slot: number;
  readonly dev: number;
  readonly type: number;
  readonly addr: number;
  readonly size: number;
  readonly phys: number;
  readonly dir: number;
}

// Addresses from a small set (so entries collide on an address, as identity mappings do), some above
// 2^32 (the hash uses both halves), sizes and directions from small sets (so exact matches compete).
const ADDRS = [0, 0x1000, 0x2000, 0xffff_f000, 0x1_0000_1000, 0x7_ffff_f000, 2 ** 52];
const op = fc.oneof(
  fc.record({ kind: fc.constant("add" as const), dev: fc.nat(2), type: fc.constantFrom(TYPE_PHY, TYPE_SG, TYPE_COHERENT), a: fc.nat(ADDRS.length - 1), size: fc.constantFrom(64, 4096), dir: fc.nat(2) }),
  fc.record({ kind: fc.constant("remove" as const), dev: fc.nat(2), a: fc.nat(ADDRS.length - 1), size: fc.constantFrom(64, 4096), type: fc.constantFrom(TYPE_PHY, TYPE_SG), dir: fc.nat(2) }),
);

describe("DebugEntryTable", () => {
  it("property: finds, lists and removes entries as a list in insertion order would, across chunks and rehashes", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 3000 }), (ops) => {
        const t = new DebugEntryTable();
        const names = ["0000:01:00.0", "0000:02:00.0", "0000:03:00.0"].map((n) => t.deviceId(n));
        let live: Model[] = [];
        let phys = 0;
        for (const o of ops) {
          const dev = names[o.dev] ?? 0;
          const addr = ADDRS[o.a] ?? 0;
          if (o.kind === "add") {
            phys += 4096;
            const slot = t.add(dev, o.type, addr, o.size, phys, o.dir, 0);
            live.push({ slot, dev, type: o.type, addr, size: o.size, phys, dir: o.dir });
            continue;
          }
          // bucket_find_exact, else the oldest at the address.
          const same = live.filter((e) => e.dev === dev && e.addr === addr);
          const want = same.find((e) => e.size === o.size && e.type === o.type && e.dir === o.dir) ?? same[0];
          const got = t.findExact(dev, addr, o.size, o.type, o.dir);
          expect(got).toBe(want?.slot ?? -1);
          expect(t.first(dev, addr)).toBe(same[0]?.slot ?? -1);
          if (want !== undefined) {
            expect([t.addr(got), t.size(got), t.phys(got), t.type(got), t.dir(got), t.dev(got)]).toEqual([want.addr, want.size, want.phys, want.type, want.dir, want.dev]);
            t.remove(got);
            live = live.filter((e) => e !== want);
          }
        }
        expect(t.count).toBe(live.length);
        const listed: number[] = [];
        t.forEach(-1, (s) => listed.push(s));
        expect(listed).toEqual(live.map((e) => e.slot));
        const ofDev1: number[] = [];
        t.forEach(names[1] ?? 0, (s) => ofDev1.push(s));
        expect(ofDev1).toEqual(live.filter((e) => e.dev === names[1]).map((e) => e.slot));
      }),
      { numRuns: 60 },
    );
  });

  it("marks every entry at an address, and a removed slot is reused without keeping its flags", () => {
    const t = new DebugEntryTable();
    const dev = t.deviceId("0000:01:00.0");
    const a = t.add(dev, TYPE_PHY, 0x1_0000_0000, 4096, 0x1000, 0, 0);
    const b = t.add(dev, TYPE_PHY, 0x1_0000_0000, 64, 0x2000, 1, 0);
    for (let s = t.first(dev, 0x1_0000_0000); s >= 0; s = t.nextSame(s)) t.setFlag(s, INFO_CHECKED);
    expect([t.info(a) & INFO_CHECKED, t.info(b) & INFO_CHECKED]).toEqual([INFO_CHECKED, INFO_CHECKED]);
    t.remove(a);
    const c = t.add(dev, TYPE_SG, 0x3000, 128, 0x3000, 2, 0);
    expect(c).toBe(a);
    expect(t.info(c) & INFO_CHECKED).toBe(0);
    expect(t.findDevice("0000:09:00.0")).toBe(-1);
  });
});
