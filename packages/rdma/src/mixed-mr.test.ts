import { describe, expect, it } from "vitest";
import { DmaCounter } from "@dmasim/dma";
import { DmaBufCounter, DmaResvUsage, dmaBufPut } from "@dmasim/dmabuf";
import { MADV_DONTNEED, PROT_READ, PROT_WRITE } from "@dmasim/hmm-odp";
import { unsafeIova } from "@dmasim/iommu";
import { PAGE_SIZE } from "@dmasim/memory";
import { IB_ACCESS_REMOTE_WRITE, IbWcStatus, RdmaErrno } from "./constants.js";
import { RdmaCounter } from "./counters.js";
import { RdmaInputError } from "./errors.js";
import { MixedEventLog } from "./mixed-events.js";
import { regMixedMr } from "./mixed-mr.js";
import { OK } from "./test-fixtures.js";
import { RW, mixedBackingPhys, mixedMttPhys, mixedRead, mixedRig, mixedStaleEntries, mixedWrite, tagBytes } from "./test-mixed.js";
import type { MixedRig } from "./test-mixed.js";

function readAll(r: MixedRig): (Uint8Array | number)[] {
  const out: (Uint8Array | number)[] = [];
  for (let p = 0; p < r.pages; p++) out.push(mixedRead(r, p));
  return out;
}

describe("a mixed MR: user VA and dma-bufs behind one mkey, one MTT, one IOVA", () => {
  it("reserves one IOVA for the whole MR; every page faults in through its own path and reads its bytes", () => {
    const r = mixedRig();
    const c = r.nicB.counters;
    // One dma_iova_try_alloc at registration, none after: the dma-buf pages link into the same IOVA.
    expect(r.umem.map.state.size).toBe(r.pages * PAGE_SIZE);
    const allocs = c.get(DmaCounter.DmaIovaTryAllocs);
    const got = readAll(r);
    for (let p = 0; p < r.pages; p++) expect({ p, kind: r.kindOf(p), got: got[p] }).toEqual({ p, kind: r.kindOf(p), got: tagBytes(p) });
    expect(c.get(DmaCounter.DmaIovaTryAllocs)).toBe(allocs);
    expect(mixedStaleEntries(r)).toEqual([]);
    // Every page through the IOMMU sits at its own page of the one IOVA: the MR's page index.
    const base = r.umem.map.state.addr;
    for (const k of ["anon", "thp", "file", "bar-bridge", "vfio-bar"] as const) {
      const p = r.part(k).first + 1;
      const e = r.mr.mtt[p] ?? 0;
      expect({ k, iova: e - (e % 4) }).toEqual({ k, iova: base + p * PAGE_SIZE });
    }
    // VRAM blocks through the switch: bus addresses, no IOVA; RAM blocks: IOVA.
    const g = r.part("gpu-vram");
    const vramEntry = r.mr.mtt[g.first] ?? 0;
    expect(vramEntry - (vramEntry % 4)).toBe(mixedBackingPhys(r, g.first)! + r.gpuVram.provider.busOffset);
    const ramEntry = r.mr.mtt[g.first + 16] ?? 0;
    expect(ramEntry - (ramEntry % 4)).toBe(base + (g.first + 16) * PAGE_SIZE);
    // The devpriv pages came back from the GPU on the NIC's fault (ODP's owner is NULL).
    expect(mixedMttPhys(r, r.part("devpriv").first)).toBe(mixedBackingPhys(r, r.part("devpriv").first));
  });

  it("segmentAt (a binary search over the segment ends) agrees with a linear search on every page and refuses outside pages", () => {
    const r = mixedRig();
    const segs = r.umem.segments;
    const linear = (p: number): number | undefined => segs.find((s) => p >= s.first && p < s.first + s.pages)?.index;
    for (let p = -2; p < r.pages + 2; p++) expect({ p, k: r.umem.segmentAt(p)?.index }).toEqual({ p, k: linear(p) });
    expect(r.umem.segmentAt(0.5)?.index).toBe(linear(0.5));
    expect(r.umem.segmentAt(Number.NaN)).toBeUndefined();
    // Every segment's first and last page map to it.
    for (const s of segs) expect([r.umem.segmentAt(s.first)?.index, r.umem.segmentAt(s.first + s.pages - 1)?.index]).toEqual([s.index, s.index]);
  });

  it("a device-private page migrating back on the NIC's fault invalidates a slice the MTT does not map yet: no MR event", () => {
    const r = mixedRig();
    const d = r.part("devpriv");
    const c = r.nicB.counters;
    const inv = c.get(RdmaCounter.OdpInvalidations);
    const events = r.umem.events.total;
    for (let p = d.first; p < d.first + d.pages; p++) expect(mixedRead(r, p)).toEqual(tagBytes(p));
    // Each page's migrate_vma fired MIGRATE over the MR's notifier (counted), but nothing was live to zap.
    expect(c.get(RdmaCounter.OdpInvalidations) - inv).toBeGreaterThanOrEqual(d.pages);
    expect(r.umem.events.total).toBe(events);
    // A later invalidation of live entries is logged and priced.
    expect(r.mm.munmap(d.at, PAGE_SIZE)).toBe(0);
    expect(r.umem.events.total).toBe(events + 1);
    expect(r.umem.events.records.at(-1)?.dmaUnmapNs).toBeGreaterThan(0);
    expect(mixedStaleEntries(r)).toEqual([]);
  });

  it("a fault on a PMD-mapped THP page maps the whole 2 MiB in one UMR; after a split, pages fault one by one", () => {
    for (const odpDma of ["hmm_dma_map", "hmm_dma_map batched"] as const) {
      const r = mixedRig({ odpDma });
      const t = r.part("thp");
      const c = r.nicB.counters;
      expect(r.mm.pteAt(t.at)?.pmd).toBe(true);
      const faults = r.nicB.stats.pageFaultEvents;
      const umrs = c.get(RdmaCounter.UmrPosts);
      const faulted = c.get(RdmaCounter.OdpPagesFaulted);
      expect(mixedRead(r, t.first + 300)).toEqual(tagBytes(t.first + 300));
      expect({ odpDma, faults: r.nicB.stats.pageFaultEvents - faults, umrs: c.get(RdmaCounter.UmrPosts) - umrs, pages: c.get(RdmaCounter.OdpPagesFaulted) - faulted }).toEqual({ odpDma, faults: 1, umrs: 1, pages: t.pages });
      // Every page of the huge page: its own frame, reached without another fault.
      for (let p = t.first; p < t.first + t.pages; p++) {
        expect(mixedMttPhys(r, p)).toBe(mixedBackingPhys(r, p));
        expect(mixedRead(r, p)).toEqual(tagBytes(p));
      }
      expect(r.nicB.stats.pageFaultEvents - faults).toBe(1);
      // munmap of one page splits the PMD: that page errors, the others are still right, faulting 4 KiB at a time.
      expect(r.mm.munmap(t.at + 7 * PAGE_SIZE, PAGE_SIZE)).toBe(0);
      expect(r.mm.pteAt(t.at)?.pmd).not.toBe(true);
      expect(mixedStaleEntries(r)).toEqual([]);
      expect(mixedRead(r, t.first + 7)).toBe(IbWcStatus.REM_ACCESS_ERR);
      const after = r.nicB.stats.pageFaultEvents;
      for (const p of [t.first + 6, t.first + 8, t.first + 400]) expect(mixedRead(r, p)).toEqual(tagBytes(p));
      expect(r.nicB.stats.pageFaultEvents - after).toBeLessThanOrEqual(3);
      expect(mixedStaleEntries(r)).toEqual([]);
    }
  });

  it("one WR crosses segment boundaries (VA → dma-buf → VA → dma-buf) byte for byte", () => {
    const r = mixedRig();
    const g = r.part("gpu-vram");
    const v = r.part("vfio-bar");
    const len = 3 * PAGE_SIZE;
    for (const at of [g.first - 1, g.first + g.pages - 1, v.first - 2]) {
      const bytes = new Uint8Array(len);
      for (let i = 0; i < len; i++) bytes[i] = (i * 7 + at) & 0xff;
      expect(mixedWrite(r, at, bytes.subarray(100, len - 100), 100)).toBe(OK);
      const back = mixedRead(r, at, len - 200, 100);
      expect(back).toEqual(bytes.subarray(100, len - 100));
    }
    // The CPU views agree: the GPU buffer, the VFIO BAR, the process.
    const gpuBytes = r.gpuVram.cpuRead(r.vram, 0, 64);
    expect(gpuBytes).toEqual(Uint8Array.from({ length: 64 }, (_, i) => (PAGE_SIZE + i * 7 + g.first - 1) & 0xff));
    expect(mixedStaleEntries(r)).toEqual([]);
  });

  it("each source invalidates only its slice: munmap, madvise, mprotect, fork, GPU migration, VFIO revoke", () => {
    const r = mixedRig();
    const { mm } = r;
    expect(readAll(r).every((x) => x instanceof Uint8Array)).toBe(true);
    const live = (): number => r.mr.mtt.reduce((n, e) => n + (e !== 0 ? 1 : 0), 0);
    const all = live();
    expect(all).toBe(r.pages);
    const g = r.part("gpu-vram");
    const v = r.part("vfio-bar");
    const anon = r.part("anon");
    const iovaOf = (p: number): number | undefined => r.nicB.dev.domain?.iovaToPhys(unsafeIova(r.umem.map.state.addr + p * PAGE_SIZE));

    // GPU migration: only the GPU slice is zapped and unlinked; the next access waits for the copy.
    const before = iovaOf(anon.first);
    const ramBlock = iovaOf(g.first + 16);
    expect(ramBlock).toBeDefined();
    expect(r.gpuVram.migrate(r.vram, "vram", [1])).toBe(1);
    expect(live()).toBe(all - g.pages);
    for (let p = g.first; p < g.first + g.pages; p++) expect(r.mr.mtt[p]).toBe(0);
    expect(iovaOf(g.first + 16)).toBeUndefined();
    expect(iovaOf(anon.first)).toBe(before);
    expect(r.vram.resv.testSignaled(DmaResvUsage.KERNEL)).toBe(false);
    const waits = r.nicB.counters.get(DmaBufCounter.DmaBufFenceWaits);
    expect(mixedRead(r, g.first + 16)).toEqual(tagBytes(g.first + 16));
    expect(r.vram.resv.testSignaled(DmaResvUsage.KERNEL)).toBe(true);
    expect(r.nicB.counters.get(DmaBufCounter.DmaBufFenceWaits)).toBeGreaterThan(waits);
    expect(mixedStaleEntries(r)).toEqual([]);

    // VRAM pressure: another buffer wants all of VRAM, the exporter evicts ours to RAM ("evict").
    expect(mixedRead(r, g.first)).toEqual(tagBytes(g.first));
    const big = r.gpuVram.allocate(r.gpuVram.nBlocks * r.gpuVram.blockBytes);
    expect(r.gpuVram.placement(r.vram).every((v) => !v)).toBe(true);
    expect(r.mr.mtt[g.first]).toBe(0);
    expect(r.umem.events.records.at(-1)).toMatchObject({ source: "gpu", reason: "evict" });
    expect(mixedRead(r, g.first)).toEqual(tagBytes(g.first));
    dmaBufPut(big);
    expect(mixedStaleEntries(r)).toEqual([]);

    // VFIO revoke: the VFIO slice gets access errors, the rest keeps working; enable restores it.
    expect(r.vfio.setMemoryEnable(false)).toEqual({ done: true, waitingFor: 0 });
    for (let p = v.first; p < v.first + v.pages; p++) expect(r.mr.mtt[p]).toBe(0);
    expect(mixedRead(r, v.first)).toBe(IbWcStatus.REM_ACCESS_ERR);
    expect(mixedWrite(r, v.first + 1, tagBytes(1))).toBe(IbWcStatus.REM_ACCESS_ERR);
    expect(mixedRead(r, g.first)).toEqual(tagBytes(g.first));
    expect(mixedRead(r, anon.first)).toEqual(tagBytes(anon.first));
    expect(mixedStaleEntries(r)).toEqual([]);
    expect(r.vfio.setMemoryEnable(true)).toEqual({ done: true, waitingFor: 0 });
    expect(mixedRead(r, v.first + 3)).toEqual(tagBytes(v.first + 3));

    // munmap of one anonymous page: that page errors, its neighbours and every other source keep working.
    expect(mm.munmap(anon.at + 2 * PAGE_SIZE, PAGE_SIZE)).toBe(0);
    expect(r.mr.mtt[anon.first + 2]).toBe(0);
    expect(mixedRead(r, anon.first + 2)).toBe(IbWcStatus.REM_ACCESS_ERR);
    expect(mixedRead(r, anon.first + 3)).toEqual(tagBytes(anon.first + 3));
    expect(mixedRead(r, g.first + 1)).toEqual(tagBytes(g.first + 1));
    // madvise(DONTNEED): a zero page on the next access.
    expect(mm.madvise(anon.at + 4 * PAGE_SIZE, PAGE_SIZE, MADV_DONTNEED)).toBe(0);
    expect(mixedRead(r, anon.first + 4)).toEqual(new Uint8Array(64));
    // mprotect(PROT_READ) of the file pages: a writable MR's faults ask for write, so the slice errors.
    const f = r.part("file");
    expect(mm.mprotect(f.at, f.pages * PAGE_SIZE, PROT_READ)).toBe(0);
    expect(mixedWrite(r, f.first, tagBytes(7))).toBe(IbWcStatus.REM_ACCESS_ERR);
    expect(mm.mprotect(f.at, f.pages * PAGE_SIZE, PROT_READ | PROT_WRITE)).toBe(0);
    expect(mixedWrite(r, f.first, tagBytes(7))).toBe(OK);
    // fork: the parent's device writes land in the parent, the child keeps its copy.
    const child = mm.fork();
    expect(mixedWrite(r, anon.first + 5, tagBytes(900))).toBe(OK);
    expect(mm.read(anon.at + 5 * PAGE_SIZE, 64)).toEqual(tagBytes(900));
    expect(child.read(anon.at + 5 * PAGE_SIZE, 64)).toEqual(tagBytes(anon.first + 5));
    expect(mixedStaleEntries(r)).toEqual([]);
    child.exit();

    // Per source: time to quiescence and to the first DMA after, on the virtual clock.
    const rows = r.umem.events.bySource();
    expect(rows.map((x) => x.source).sort()).toEqual(["gpu", "mm", "vfio"]);
    for (const row of rows) {
      expect(row.quiescenceMaxNs).toBeGreaterThan(0);
      expect(row.firstDmaMaxNs).toBeGreaterThan(0);
    }
    // Each event: zapped before the NIC next reached the slice.
    for (const e of r.umem.events.records) if (e.tFirstDma !== undefined) expect(e.tFirstDma).toBeGreaterThanOrEqual(e.tQuiesced);
    // The sources' own logs (the invalidation contract) saw the same first DMA.
    const gpuRec = r.dmabufs.invalidations.records.find((x) => x.reason === "migrate" && x.tFirstDmaAfter !== undefined);
    expect(gpuRec?.tFirstDmaAfter).toBe(r.umem.events.records.find((e) => e.source === "gpu")?.tFirstDma);
    expect(r.mm.invalidations.records.some((x) => x.tFirstDmaAfter !== undefined)).toBe(true);
    const gpuEvent = r.umem.events.records.find((e) => e.source === "gpu");
    expect(gpuEvent?.reason).toBe("migrate");
    // The first DMA after a migration waited for the copy's KERNEL fence: at least the copy's time.
    expect(MixedEventLog.firstDmaNs(gpuEvent!)).toBeGreaterThanOrEqual((64 * 1024) / r.gpuVram.copyBytesPerNs);
  });

  it("a VA fault of several pages: a link and a sync per page, or one sync per run with the batched strategy", () => {
    for (const [odpDma, syncs] of [["hmm_dma_map", 4], ["hmm_dma_map batched", 1]] as const) {
      const r = mixedRig({ odpDma });
      const p = r.part("anon").first + 8;
      const before = r.nicB.counters.get(DmaCounter.DmaIovaSyncs);
      const bytes = Uint8Array.from({ length: 4 * PAGE_SIZE }, (_, i) => (i * 13) & 0xff);
      expect(mixedWrite(r, p, bytes)).toBe(OK);
      expect({ odpDma, syncs: r.nicB.counters.get(DmaCounter.DmaIovaSyncs) - before }).toEqual({ odpDma, syncs });
      expect(mixedRead(r, p, 4 * PAGE_SIZE)).toEqual(bytes);
      expect(mixedStaleEntries(r)).toEqual([]);
    }
  });

  it("deregMr leaves nothing: IOVA, IOMMU mappings, attachments, notifiers", () => {
    const r = mixedRig();
    readAll(r);
    const domain = r.nicB.dev.domain;
    expect(domain?.mappedBytes).toBeGreaterThan(0);
    const notifiers = r.mm.subscriptions.itree.length;
    expect(r.mm.subscriptions.itree.filter((n) => n.owner.includes(".mixed")).length).toBe(2);
    expect(r.nicB.deregMr(r.mr)).toBe(0);
    expect(r.nicB.deregMr(r.mr)).toBe(-RdmaErrno.EINVAL);
    expect(domain?.mappedBytes).toBe(0);
    expect(r.vram.attachments.length).toBe(0);
    expect(r.vfioBuf.attachments.length).toBe(0);
    expect(r.mm.subscriptions.itree.length).toBe(notifiers - 2);
    expect(r.mr.mtt.every((e) => e === 0)).toBe(true);
    // Sources act after dereg without reaching the MR.
    expect(r.gpuVram.migrate(r.vram, "ram")).toBeGreaterThan(0);
    expect(r.vfio.setMemoryEnable(false).done).toBe(true);
    expect(r.nicA.deregMr(r.staging)).toBe(0);
    expect(r.nicB.kernel.unbind(r.nicB.dev).leakedIovaStates).toBe(0);
    expect(r.dmabufs.debug.reports()).toEqual([]);
  });

  it("bad input throws; a refusal changes nothing", () => {
    const r = mixedRig();
    const domain = r.nicB.dev.domain;
    const mapped = domain?.mappedBytes;
    const va = { kind: "va" as const, mm: r.mm, addr: r.part("anon").at, length: PAGE_SIZE };
    expect(() => regMixedMr(r.nicB, r.pdB, [], RW)).toThrow(RdmaInputError);
    expect(() => regMixedMr(r.nicB, r.pdB, [{ ...va, length: 100 }], RW)).toThrow(RdmaInputError);
    expect(() => regMixedMr(r.nicB, r.pdB, [{ kind: "dmabuf", buf: r.vram, offset: 0, length: PAGE_SIZE }], RW)).toThrow(RdmaInputError);
    expect(() => regMixedMr(r.nicB, r.pdB, [va, { kind: "dmabuf", buf: r.vram, offset: 0, length: r.vram.size + PAGE_SIZE }], RW)).toThrow(RdmaInputError);
    expect(() => regMixedMr(r.nicB, r.pdA, [va], RW)).toThrow(RdmaInputError);
    expect(regMixedMr(r.nicB, r.pdB, [va], IB_ACCESS_REMOTE_WRITE)).toBe(-RdmaErrno.EINVAL);
    expect(() => regMixedMr(r.nicB, r.pdB, [{ ...va, addr: va.addr + 1 }], RW)).toThrow(RdmaInputError);
    expect(() => regMixedMr(r.nicB, r.pdB, [va], RW, { iova: 100 })).toThrow(RdmaInputError);
    expect(() => regMixedMr(r.nicB, r.pdB, [va, { kind: "pinned", length: PAGE_SIZE } as unknown as typeof va], RW)).toThrow(RdmaInputError);
    expect(() => regMixedMr(r.nicB, r.pdB, [va], 1 << 30)).toThrow(RdmaInputError);
    // A revoked VFIO buffer refuses the attach: the VA segment's notifier and the GPU attachment go again.
    const subs = r.mm.subscriptions.itree.length;
    const gpuAttach = r.vram.attachments.length;
    expect(r.vfio.setMemoryEnable(false).done).toBe(true);
    const allocs = r.nicB.counters.get(DmaCounter.DmaIovaTryAllocs);
    expect(regMixedMr(r.nicB, r.pdB, [va, { kind: "dmabuf", buf: r.vram, offset: 0, length: PAGE_SIZE }, { kind: "dmabuf", buf: r.vfioBuf, offset: 0, length: PAGE_SIZE }], RW)).toBe(-19);
    expect(r.nicB.counters.get(DmaCounter.DmaIovaTryAllocs)).toBe(allocs + 1);
    expect(r.mm.subscriptions.itree.length).toBe(subs);
    expect(r.vram.attachments.length).toBe(gpuAttach);
    expect(domain?.mappedBytes).toBe(mapped);
    expect(r.nicB.mrs.length).toBe(1);
  });
});
