import { describe, expect, it } from "vitest";
import { DmaDirection } from "@dmasim/dma";
import { dmaMapSgtable, dmaUnmapSgtable } from "./index.js";
import type { SgTable } from "./index.js";
import { acquireScratch, releaseScratch } from "./scratch.js";
import { firstBadSegment, listOf, makeRig } from "./test-fixtures.js";
import type { EntryDesc, Rig } from "./test-fixtures.js";

// dma_map_sg keeps its working arrays (entry kinds, layout, two-step placement) per kernel and per call.
// A trace subscriber runs in the middle of a mapping, so it can map another list, on another platform or
// on the same kernel: the outer mapping must still give its device the right bytes.

const OUTER: readonly EntryDesc[] = [{ len: 4096 }, { len: 4096 }, { len: 4096 }, { len: 4096 }];
// A different shape, longer than the outer list, so a shared array would be overwritten at every index the outer call uses.
const INNER: readonly EntryDesc[] = Array.from({ length: 40 }, (_, i) => ({ len: 512 + 64 * i, offset: 128 }));

function mapFromSubscriber(outer: Rig, inner: () => { rig: Rig; table: SgTable }, impl: "two-step" | "classic"): { innerRet: number; inner: { rig: Rig; table: SgTable } | undefined } {
  let nested: { rig: Rig; table: SgTable } | undefined;
  let innerRet = -1;
  // Fires in the middle of the outer call: the first dma_iova_link (two-step) or the first IOMMU map (classic).
  const off = outer.kernel.trace.events.subscribe((e) => {
    const trigger = impl === "two-step" ? e.type === "api" && e.phase === "B" && e.name === "dma_iova_link" : e.type === "iommu.map";
    if (!trigger || nested !== undefined) return;
    nested = inner();
    innerRet = dmaMapSgtable(nested.rig.dev, nested.table, DmaDirection.TO_DEVICE, 0, { impl });
  });
  return {
    get innerRet() {
      return innerRet;
    },
    get inner() {
      off();
      return nested;
    },
  };
}

describe("dma_map_sgtable called from a trace subscriber during another mapping", () => {
  for (const impl of ["two-step", "classic"] as const) {
    it(`${impl}: a list mapped on platform B mid-way through platform A's mapping leaves A's device reading A's bytes`, () => {
      const a = makeRig();
      const b = makeRig();
      const outerTable = listOf(a, OUTER);
      const run = mapFromSubscriber(a, () => ({ rig: b, table: listOf(b, INNER) }), impl);
      expect(dmaMapSgtable(a.dev, outerTable, DmaDirection.TO_DEVICE, 0, { impl })).toBe(0);
      const nested = run.inner;
      expect(nested).toBeDefined();
      expect(run.innerRet).toBe(0);
      expect(firstBadSegment(a, outerTable)).toBe(-1);
      if (nested !== undefined) {
        expect(firstBadSegment(nested.rig, nested.table)).toBe(-1);
        dmaUnmapSgtable(nested.rig.dev, nested.table, DmaDirection.TO_DEVICE);
        expect(nested.rig.kernel.unbind(nested.rig.dev).leakedMappings).toEqual([]);
      }
      dmaUnmapSgtable(a.dev, outerTable, DmaDirection.TO_DEVICE);
      expect(a.kernel.unbind(a.dev).leakedMappings).toEqual([]);
    });

    it(`${impl}: a list mapped on the same kernel mid-way through a mapping leaves both lists right`, () => {
      const a = makeRig();
      const outerTable = listOf(a, OUTER);
      const run = mapFromSubscriber(a, () => ({ rig: a, table: listOf(a, INNER) }), impl);
      expect(dmaMapSgtable(a.dev, outerTable, DmaDirection.TO_DEVICE, 0, { impl })).toBe(0);
      const nested = run.inner;
      expect(run.innerRet).toBe(0);
      expect(firstBadSegment(a, outerTable)).toBe(-1);
      if (nested !== undefined) {
        expect(firstBadSegment(a, nested.table)).toBe(-1);
        dmaUnmapSgtable(a.dev, nested.table, DmaDirection.TO_DEVICE);
      }
      dmaUnmapSgtable(a.dev, outerTable, DmaDirection.TO_DEVICE);
      expect(a.kernel.unbind(a.dev).leakedMappings).toEqual([]);
    });
  }

  it("a kernel's arrays are reused once a call has released them; a nested call gets its own; kernels never share", () => {
    const a = makeRig();
    const b = makeRig();
    const first = acquireScratch(a.kernel, 8);
    const nested = acquireScratch(a.kernel, 8);
    const other = acquireScratch(b.kernel, 8);
    expect(nested).not.toBe(first);
    expect(other).not.toBe(first);
    releaseScratch(nested);
    releaseScratch(other);
    releaseScratch(first);
    const again = acquireScratch(a.kernel, 300);
    expect(again).toBe(first);
    expect(again.capacity).toBeGreaterThanOrEqual(300);
    releaseScratch(again);
  });
});
