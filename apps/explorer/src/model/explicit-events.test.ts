import { describe, expect, test } from "vitest";
import type { LogEvent } from "./events.js";
import { IovaState, iovaStateAt, staleEntries } from "./iova-space.js";
import { pageTableTree, treeTotals } from "./page-table.js";
import { Replay } from "./replay.js";
import { hopsToNodes, routeOf, type Topology } from "./topology.js";

// Logs that report the IOTLB, the page-table pages, the IOVA allocator and TLP routes themselves: the
// replay takes them as written instead of inferring them.

const ev = (type: string, fields: Record<string, unknown>): LogEvent => ({ type, t: 0, ...fields });
const DEV = "0000:02:00.0";
const ctx = { deviceDomain: { [DEV]: 1 } };
const IOVA = 0xffff0000;

const lazyUnmap: LogEvent[] = [
  ev("iova.alloc", { device: DEV, iova: IOVA, size: 0x2000, path: "classic" }),
  ev("iommu.pt-alloc", { unit: "iommu0", domain: 1, level: 3, iova: 0 }),
  ev("iommu.pt-alloc", { unit: "iommu0", domain: 1, level: 2, iova: 0xc0000000 }),
  ev("iommu.pt-alloc", { unit: "iommu0", domain: 1, level: 1, iova: 0xffe00000 }),
  ev("iommu.map", { unit: "iommu0", domain: 1, iova: IOVA, phys: 0x400000, size: 0x2000, prot: 3, pgsize: 4096 }),
  ev("iotlb.lookup", { unit: "iommu0", device: DEV, domain: 1, iova: IOVA, result: "miss" }),
  ev("iotlb.fill", { unit: "iommu0", domain: 1, iova: IOVA, size: 4096, phys: 0x400000 }),
  ev("tlp", { device: DEV, path: "memory", access: "read", addr: IOVA, len: 64, phys: 0x400000, target: "ram", hops: [DEV, "sw0.dp0", "sw0.up", "rp0", "hb0", "iommu0", "ram"], acsRedirect: false }),
  ev("iommu.unmap", { unit: "iommu0", domain: 1, iova: IOVA, size: 0x2000, unmapped: 0x2000, pgsize: 4096 }),
  ev("iova.free", { device: DEV, iova: IOVA, size: 0x2000, path: "classic", queued: true }),
  ev("iotlb.lookup", { unit: "iommu0", device: DEV, domain: 1, iova: IOVA, result: "stale-hit" }),
  ev("iotlb.invalidate", { unit: "iommu0", scope: "domain", domain: 1, iova: 0, size: 0 }),
  ev("iommu.pt-free", { unit: "iommu0", domain: 1, level: 1, iova: 0xffe00000 }),
  ev("flush-queue.release", { device: DEV, cpu: 0, iova: IOVA, size: 0x2000 }),
];

describe("a log with IOTLB, page-table and allocator events", () => {
  const r = new Replay(lazyUnmap, ctx, 4);
  const at = (n: number) => r.stateAt(n).domains.get(1)!;

  test("IOVA states: allocated, linked, stale, queued in the flush queue, then free", () => {
    expect(iovaStateAt(at(1), IOVA)).toBe(IovaState.ALLOCATED);
    expect(iovaStateAt(at(5), IOVA)).toBe(IovaState.LINKED);
    expect(iovaStateAt(at(9), IOVA)).toBe(IovaState.STALE);
    expect(iovaStateAt(at(9), IOVA + 0x1000)).toBe(IovaState.ALLOCATED); // unmapped, never cached, not yet freed
    expect(iovaStateAt(at(10), IOVA + 0x1000)).toBe(IovaState.QUEUED);
    expect(iovaStateAt(at(12), IOVA)).toBe(IovaState.QUEUED);
    expect(iovaStateAt(at(14), IOVA)).toBe(IovaState.FREE);
  });

  test("the IOTLB comes from fills and lookups, not from the TLPs", () => {
    expect(r.ctx.explicitIotlb).toBe(true);
    expect(at(7).cached.ranges()).toEqual([{ lo: IOVA, hi: IOVA + 4096, val: 0x400000 - IOVA }]);
    expect(staleEntries(at(11))).toEqual([{ lo: IOVA, hi: IOVA + 4096 }]);
    expect(r.stateAt(11).staleHits).toBe(1);
    expect(r.staleTlps).toEqual([10]);
    expect(r.stateAt(14).iotlbFills).toBe(1);
    expect(r.iotlbSeries.stale.at(-1)).toBe(0);
    expect(Math.max(...r.iotlbSeries.entries)).toBe(1);
  });

  test("the page table shows the reported tables and counts the freed one", () => {
    expect(treeTotals(pageTableTree(at(5)))).toEqual({ tables: 4, leaves4k: 2, leaves2m: 0, leaves1g: 0, emptied: 0 });
    const end = treeTotals(pageTableTree(at(14)));
    expect(end.tables).toBe(3);
    expect(end.emptied).toBe(1);
  });

  test("a fill of a range mapped before recording began shows it mapped, not stale", () => {
    const early = new Replay([ev("iotlb.fill", { unit: "iommu0", domain: 1, iova: 0x5000, size: 4096, phys: 0x9000 })], ctx);
    const d = early.stateAt(1).domains.get(1)!;
    expect(iovaStateAt(d, 0x5000)).toBe(IovaState.LINKED);
    expect(staleEntries(d)).toEqual([]);
  });

  test("a TLP's own hops become the drawing's route", () => {
    const topo: Topology = {
      nodes: ["RAM", "IOMMU", "hb0", "rp0", "sw0", "sw0.dp0", DEV].map((id) => ({ id, kind: "endpoint" as const, parent: undefined, acs: "", bars: [], behindIommu: false })),
    };
    expect(routeOf(topo, lazyUnmap[7]!)).toEqual([DEV, "sw0.dp0", "sw0", "rp0", "hb0", "IOMMU", "RAM"]);
    expect(hopsToNodes(topo, [DEV, "sw0.dp0", "sw0.up", "rp0", "hb0", "iommu0", "rp0", "sw0.up", "sw0.dp1", "x"])).toEqual([DEV, "sw0.dp0", "sw0", "rp0", "hb0", "IOMMU", "rp0", "sw0", "sw0.dp1", "x"]);
  });
});
