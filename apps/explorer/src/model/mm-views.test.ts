import { describe, expect, test } from "vitest";
import type { LogEvent } from "./events.js";
import { dmabufView, hmmView } from "./mm-views.js";

const ev = (type: string, fields: Record<string, unknown>): LogEvent => ({ type, t: 0, ...fields });
const all = (events: readonly LogEvent[]): number[] => events.map((_, i) => i);

describe("HMM per-page chain", () => {
  const events = [
    ev("hmm.range-fault", { mm: "mm1", start: 0x10000, end: 0x12000, result: 0 }),
    ev("hmm.dma-map-pfn", { device: "d", index: 0, pfn: 0x500, addr: 0xfff0000 }),
    ev("hmm.dma-map-pfn", { device: "d", index: 1, pfn: 0x777, addr: 0xfff1000 }),
    ev("hmm.dma-unmap-pfn", { device: "d", index: 1 }),
    ev("mmu-notifier.invalidate", { mm: "mm1", start: 0x11000, end: 0x12000, event: "unmap", subscribers: 1, result: 0 }),
  ];

  test("each page's pfn and DMA address, and what the invalidation removed", () => {
    const v = hmmView(events, all(events), events.length);
    expect(v.pages.map((p) => [p.index, p.pfn, p.addr, p.mapped])).toEqual([
      [0, 0x500, 0xfff0000, true],
      [1, 0x777, 0xfff1000, false],
    ]);
    expect(v.invalidations).toEqual([{ index: 4, start: 0x11000, end: 0x12000, event: "unmap", removed: ["d:1"] }]);
    expect(v.faults).toHaveLength(1);
  });

  test("at an earlier step the page is still mapped and nothing was invalidated", () => {
    const v = hmmView(events, all(events), 3);
    expect(v.pages.every((p) => p.mapped)).toBe(true);
    expect(v.invalidations).toEqual([]);
  });
});

test("what an invalidation removed: the unmaps its subscribers made before its event", () => {
  const events = [
    ev("hmm.range-fault", { mm: "mm1", start: 0x10000, end: 0x12000, result: 0 }),
    ev("iommu.unmap", { unit: "iommu0", domain: 1, iova: 0xfff0000, size: 4096, unmapped: 4096, pgsize: 4096 }),
    ev("hmm.dma-unmap-pfn", { device: "d", index: 3 }),
    ev("mmu-notifier.invalidate", { mm: "mm1", start: 0x10000, end: 0x12000, event: "madvise", subscribers: 1, result: 0 }),
    ev("iommu.unmap", { unit: "iommu0", domain: 1, iova: 0xfff1000, size: 4096, unmapped: 4096, pgsize: 4096 }),
  ];
  const hmmIdx = [0, 2, 3];
  expect(hmmView(events, hmmIdx, events.length).invalidations[0]?.removed).toEqual(["IOVA 0xfff0000+4096", "d:3"]);
});

describe("dma-buf placement", () => {
  test("moves, importers' mappings and revocation over time", () => {
    const events = [
      ev("dmabuf.map", { buf: 7, exporter: "gpu", device: "nic", kind: "phys", size: 4096 }),
      ev("dmabuf.move", { buf: 7, exporter: "gpu", to: "ram", blocks: 2, bytes: 8192, inVram: 2, totalBlocks: 4 }),
      ev("dmabuf.invalidate", { buf: 7, exporter: "gpu", reason: "move", importers: 1, pending: 0 }),
      ev("dmabuf.unmap", { buf: 7, exporter: "gpu", device: "nic", kind: "phys" }),
      ev("dmabuf.move", { buf: 7, exporter: "gpu", to: "ram", blocks: 2, bytes: 8192, inVram: 0, totalBlocks: 4 }),
      ev("dmabuf.revoke", { buf: 7, exporter: "gpu", revoked: true, reason: "close", waitingFor: 0 }),
    ];
    const mid = dmabufView(events, all(events), 3)[0]!;
    expect(mid.placement).toBe("mixed");
    expect(mid.importers.get("nic")).toEqual({ kind: "phys", size: 4096, mapped: true });
    const end = dmabufView(events, all(events), events.length)[0]!;
    expect([end.placement, end.moves, end.invalidations, end.revoked, end.importers.get("nic")?.mapped]).toEqual(["ram", 2, 1, true, false]);
  });
});
