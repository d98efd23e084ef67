import { describe, expect, it } from "vitest";
import { DmaDebugError, DmaDirection } from "@dmasim/dma";
import type { DmaDevice } from "@dmasim/dma";
import { Trace } from "@dmasim/trace";
import {
  SG_MAX_NENTS,
  ScatterlistError,
  dmaMapSg,
  dmaMapSgtable,
  dmaSyncSgForCpu,
  dmaSyncSgForDevice,
  dmaSyncSgtableForCpu,
  dmaSyncSgtableForDevice,
  dmaUnmapSg,
  dmaUnmapSgtable,
  sgAllocTable,
  sgAllocTableFromPages,
  sgFreeTable,
  sgSetPhys,
} from "./index.js";
import type { SgMapOptions, SgTable } from "./index.js";
import { CLIENT, firstBadSegment, listOf, makeRig } from "./test-fixtures.js";
import type { Rig } from "./test-fixtures.js";
import { unsafePhysAddr } from "@dmasim/memory";

// Bad input to the scatterlist API: a ScatterlistError naming the argument, never a TypeError from inside,
// and nothing changes (no counter moves, the table stays as it was).

const TO_DEV = DmaDirection.TO_DEVICE;

function expectRefused(rig: Rig, call: () => unknown, argument: string, code = "EINVAL"): void {
  const before = rig.platform.trace.counters.snapshot();
  let err: unknown;
  try {
    call();
  } catch (e) {
    err = e;
  }
  // ScatterlistError covers the state refusals too (EBUSY, ENOMEM), which name the argument in the message.
  expect(err).toBeInstanceOf(ScatterlistError);
  expect((err as ScatterlistError).code).toBe(code);
  if (code === "EINVAL") expect((err as ScatterlistError).argument).toBe(argument);
  else expect((err as Error).message).toContain(argument);
  expect(rig.platform.trace.counters.snapshot().diff(before).nonZero()).toEqual({});
}

type SgCall = readonly [string, (dev: DmaDevice, table: SgTable) => unknown];
const CALLS: readonly SgCall[] = [
  ["dmaMapSg", (d, t) => dmaMapSg(d, t, 2, TO_DEV)],
  ["dmaMapSgtable", (d, t) => dmaMapSgtable(d, t, TO_DEV)],
  ["dmaUnmapSg", (d, t) => { dmaUnmapSg(d, t, 2, TO_DEV); }],
  ["dmaUnmapSgtable", (d, t) => { dmaUnmapSgtable(d, t, TO_DEV); }],
  ["dmaSyncSgForCpu", (d, t) => { dmaSyncSgForCpu(d, t, 2, TO_DEV); }],
  ["dmaSyncSgForDevice", (d, t) => { dmaSyncSgForDevice(d, t, 2, TO_DEV); }],
  ["dmaSyncSgtableForCpu", (d, t) => { dmaSyncSgtableForCpu(d, t, TO_DEV); }],
  ["dmaSyncSgtableForDevice", (d, t) => { dmaSyncSgtableForDevice(d, t, TO_DEV); }],
];

describe("a missing, foreign, non-device or unbound dev, and a table that is not an SgTable", () => {
  for (const [name, call] of CALLS) {
    it(name, () => {
      const rig = makeRig();
      const table = listOf(rig, [{ len: 4096 }, { len: 4096 }]);
      const other = makeRig();
      other.kernel.unbind(other.dev);
      const badDevs: unknown[] = [undefined, null, CLIENT, rig.ep, { bound: true, bdf: CLIENT, kernel: rig.kernel }, other.dev];
      for (const dev of badDevs) expectRefused(rig, () => call(dev as DmaDevice, table), "dev");
      const badTables: unknown[] = [undefined, null, [4096], { origNents: 2, phys: [0, 0], length: [1, 1] }];
      for (const t of badTables) expectRefused(rig, () => call(rig.dev, t as SgTable), "table");
      expect(table.mapped).toBe(false);
    });
  }

  it("a mapped table given to another device is refused and stays mapped for its own", () => {
    const rig = makeRig();
    const table = listOf(rig, [{ len: 4096 }, { len: 4096 }]);
    expect(dmaMapSgtable(rig.dev, table, TO_DEV)).toBe(0);
    const stranger = rig.kernel.device("0000:05:00.0");
    expectRefused(rig, () => { dmaUnmapSgtable(stranger, table, TO_DEV); }, "dev");
    expectRefused(rig, () => { dmaSyncSgtableForCpu(stranger, table, TO_DEV); }, "dev");
    expect(table.mapping?.dev).toBe(rig.dev);
    dmaUnmapSgtable(rig.dev, table, TO_DEV);
  });
});

describe("numbers, attrs and options", () => {
  it("nents, dir and attrs that are not valid values are refused", () => {
    const rig = makeRig();
    const table = listOf(rig, [{ len: 4096 }, { len: 4096 }]);
    for (const n of [0, 3, 1.5, Number.NaN, "2", 2n, undefined]) expectRefused(rig, () => dmaMapSg(rig.dev, table, n as number, TO_DEV), "nents");
    for (const d of [3, -1, "1", 1n, undefined]) expectRefused(rig, () => dmaMapSg(rig.dev, table, 2, d as DmaDirection), "dir");
    for (const a of [1 << 3, 2 ** 32, 2 ** 33 + 32, -1, 0.5, "0"]) expectRefused(rig, () => dmaMapSg(rig.dev, table, 2, TO_DEV, a as number), "attrs");
    for (const o of [null, "classic", 5]) expectRefused(rig, () => dmaMapSgtable(rig.dev, table, TO_DEV, 0, o as unknown as SgMapOptions), "options");
    expect(table.mapped).toBe(false);
  });
});

describe("sg_alloc_table sizes", () => {
  it("an enormous table is ENOMEM (more than SG_MAX_NENTS) or EINVAL (not an unsigned int), and nothing is allocated", () => {
    const rig = makeRig();
    expectRefused(rig, () => sgAllocTable(rig.platform.trace, SG_MAX_NENTS + 1), "nents", "ENOMEM");
    expectRefused(rig, () => sgAllocTable(rig.platform.trace, 2 ** 40), "nents", "EINVAL");
    expectRefused(rig, () => sgAllocTable(rig.platform.trace, Number.MAX_SAFE_INTEGER), "nents", "EINVAL");
    for (const n of [0, -1, 1.5, Number.NaN, "8", 8n]) expectRefused(rig, () => sgAllocTable(rig.platform.trace, n as number), "nents");
  });

  it("a trace that is not a Trace, and pages that are not an array, are refused", () => {
    const rig = makeRig();
    for (const t of [undefined, null, {}, rig.platform]) expectRefused(rig, () => sgAllocTable(t as Trace, 4), "trace");
    expectRefused(rig, () => sgAllocTableFromPages(rig.platform.trace, null as unknown as number[], 1, 0, 4096), "pages");
    expectRefused(rig, () => sgAllocTableFromPages({} as unknown as Trace, [1, 3], 2, 0, 8192), "trace");
    expect(sgAllocTable(new Trace(), 2).origNents).toBe(2);
  });

  it("entry writes and sg_free_table refuse a non-table", () => {
    const rig = makeRig();
    for (const t of [undefined, null, {}]) {
      expectRefused(rig, () => { sgSetPhys(t as SgTable, 0, unsafePhysAddr(4096), 4096); }, "table");
      expectRefused(rig, () => { sgFreeTable(t as SgTable); }, "table");
    }
  });
});

describe("refusals by dma-debug (throw) change nothing", () => {
  it("an unmap or a sync with the wrong direction or count leaves the list mapped and the device reading its bytes", () => {
    const rig = makeRig();
    const table = listOf(rig, [{ len: 4096 }, { len: 1000, offset: 200 }]);
    expect(dmaMapSgtable(rig.dev, table, TO_DEV)).toBe(0);
    const before = { mapped: rig.dev.domain?.mappedBytes, entries: rig.kernel.debug.entries().length, states: rig.kernel.iovaTracker.liveCount(rig.dev.bdf) };
    const calls = [
      () => { dmaUnmapSgtable(rig.dev, table, DmaDirection.FROM_DEVICE); },
      () => { dmaUnmapSg(rig.dev, table, 1, TO_DEV); },
      () => { dmaSyncSgtableForCpu(rig.dev, table, DmaDirection.FROM_DEVICE); },
    ];
    for (const call of calls) {
      expect(call).toThrow(DmaDebugError);
      expect({ mapped: rig.dev.domain?.mappedBytes, entries: rig.kernel.debug.entries().length, states: rig.kernel.iovaTracker.liveCount(rig.dev.bdf) }).toEqual(before);
      expect(table.mapped).toBe(true);
      expect(firstBadSegment(rig, table)).toBe(-1);
    }
    dmaUnmapSgtable(rig.dev, table, TO_DEV);
    expect(rig.dev.domain?.mappedBytes).toBe(0);
  });
});
