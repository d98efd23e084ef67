import { describe, expect, it } from "vitest";
import { MADV_DONTNEED, PROT_READ, PROT_WRITE, PteKind, hmmDmirrorCmd } from "@dmasim/hmm-odp";
import { PAGE_SIZE } from "@dmasim/memory";
import { IbWcStatus } from "./constants.js";
import { RdmaCounter } from "./counters.js";
import { RdmaInputError } from "./errors.js";
import { mmapHodgepodge } from "./hodgepodge.js";
import { OK, pattern } from "./test-fixtures.js";
import { expectMttMatchesCpu, hodgepodge, initialBytes as initial, mttPhys, nicRead, nicWrite } from "./test-hodgepodge.js";

describe("one ODP MR over a hodgepodge of user memory", () => {
  for (const [implicit, iommuMode, odpDma] of [[false, "strict", "hmm_dma_map"], [true, "strict", "hmm_dma_map"], [false, "lazy", "hmm_dma_map"], [false, "strict", "hmm_dma_map batched"]] as const) {
    it(`${implicit ? "implicit" : "explicit"} MR, ${iommuMode} IOMMU, ${odpDma}: anon, THP, file, two peer BARs and migrating device-private pages stay correct under munmap, madvise, mprotect, fork and migration`, () => {
      const h = hodgepodge({ implicit, iommuMode, odpDma });
      const { mm, base, segments, mirror, nicB, kernel } = h;
      const seg = (k: string) => segments.find((s) => s.kind === k) ?? segments[0]!;
      // 1. The NIC reads every page once: each faults in and shows what the CPU put there; the
      //    device-private pages come back to RAM through migrate_to_ram.
      for (let p = 0; p < h.pages; p++) expect({ p, got: nicRead(h, p) }).toEqual({ p, got: initial(h, p) });
      expect(mm.pteAt(base + seg("devpriv").first * PAGE_SIZE)?.kind).toBe(PteKind.PRESENT);
      expect(mm.pteAt(base + seg("thp").first * PAGE_SIZE)?.pmd).toBe(true);
      expectMttMatchesCpu(h);
      // The BAR pages: one by bus address (a hole in the IOVA), one linked as MMIO through the host bridge.
      const sw = base + seg("bar-switch").first * PAGE_SIZE;
      const br = base + seg("bar-bridge").first * PAGE_SIZE;
      expect(mttPhys(nicB, h.odp, sw)).toBe(h.gpuSwitch.phys);
      expect(mttPhys(nicB, h.odp, br)).toBe(h.gpuBridge.phys);
      // 2. A distinct pattern to every page; the CPU sees each.
      for (let p = 0; p < h.pages; p++) expect(nicWrite(h, p, 10_000 + p)).toBe(OK);
      for (let p = 0; p < h.pages; p++) expect({ p, cpu: mm.read(base + p * PAGE_SIZE, 64) }).toEqual({ p, cpu: pattern(10_000 + p) });
      expect(h.platform.memory.read(h.gpuSwitch.phys, 64)).toEqual(pattern(10_000 + seg("bar-switch").first));
      // 3. The GPU migrates its pages in again: the NIC is not the owner, so its entries are zapped;
      //    its next access brings them back to RAM, bytes intact.
      const dp = seg("devpriv");
      expect(mirror.migrateToDev(hmmDmirrorCmd(base + dp.first * PAGE_SIZE, dp.pages))).toBe(0);
      expect(mttPhys(nicB, h.odp, base + dp.first * PAGE_SIZE)).toBeUndefined();
      expect(mm.pteAt(base + dp.first * PAGE_SIZE)?.kind).toBe(PteKind.DEVICE_PRIVATE);
      expect(nicRead(h, dp.first + 3)).toEqual(pattern(10_000 + dp.first + 3));
      expect(nicWrite(h, dp.first + 4, 77)).toBe(OK);
      expectMttMatchesCpu(h);
      expect(mirror.migrateToSys(hmmDmirrorCmd(base + dp.first * PAGE_SIZE, dp.pages))).toBe(0);
      expect(mm.read(base + (dp.first + 4) * PAGE_SIZE, 64)).toEqual(pattern(77));
      // 4. munmap two anonymous pages: the NIC can no longer reach them.
      expect(mm.munmap(base + 2 * PAGE_SIZE, 2 * PAGE_SIZE)).toBe(0);
      expect(nicRead(h, 2)).toBe(IbWcStatus.REM_ACCESS_ERR);
      expect(nicWrite(h, 3, 1)).toBe(IbWcStatus.REM_ACCESS_ERR);
      expect(nicRead(h, 4)).toEqual(pattern(10_004));
      // 5. madvise(DONTNEED): anonymous pages come back zeroed; the shared file's page cache keeps its bytes.
      const f = seg("file");
      expect(mm.madvise(base + 5 * PAGE_SIZE, PAGE_SIZE, MADV_DONTNEED)).toBe(0);
      expect(mm.madvise(base + f.first * PAGE_SIZE, 2 * PAGE_SIZE, MADV_DONTNEED)).toBe(0);
      expect(nicRead(h, 5)).toEqual(new Uint8Array(64));
      expect(nicRead(h, f.first + 1)).toEqual(pattern(10_000 + f.first + 1));
      // Part of the THP: the PMD is split, only those pages are dropped.
      const t = seg("thp");
      expect(mm.madvise(base + (t.first + 8) * PAGE_SIZE, PAGE_SIZE, MADV_DONTNEED)).toBe(0);
      expect(nicRead(h, t.first + 8)).toEqual(new Uint8Array(64));
      expect(nicRead(h, t.first + 9)).toEqual(pattern(10_000 + t.first + 9));
      expectMttMatchesCpu(h);
      // 6. mprotect(PROT_READ) on the host-bridge BAR: a writable MR's faults ask for write, so even reads fail.
      expect(mm.mprotect(br, 8 * PAGE_SIZE, PROT_READ)).toBe(0);
      expect(nicRead(h, seg("bar-bridge").first)).toBe(IbWcStatus.REM_ACCESS_ERR);
      expect(mm.mprotect(br, 8 * PAGE_SIZE, PROT_READ | PROT_WRITE)).toBe(0);
      expect(nicRead(h, seg("bar-bridge").first)).toEqual(pattern(10_000 + seg("bar-bridge").first));
      // 7. fork: the parent's device writes land in the parent (COW broken for it), the child keeps the old
      //    private bytes; shared file and BAR pages are one page for both.
      const child = mm.fork();
      expect(nicWrite(h, 0, 500)).toBe(OK);
      expect(nicWrite(h, t.first + 20, 501)).toBe(OK);
      expect(nicWrite(h, f.first + 3, 502)).toBe(OK);
      expect(nicWrite(h, seg("bar-switch").first + 1, 503)).toBe(OK);
      expect(mm.read(base, 64)).toEqual(pattern(500));
      expect(child.read(base, 64)).toEqual(pattern(10_000));
      expect(child.read(base + (t.first + 20) * PAGE_SIZE, 64)).toEqual(pattern(10_000 + t.first + 20));
      expect(child.read(base + (f.first + 3) * PAGE_SIZE, 64)).toEqual(pattern(502));
      expect(child.read(sw + PAGE_SIZE, 64)).toEqual(pattern(503));
      expectMttMatchesCpu(h);
      child.exit();
      expect(kernel.trace.counters.get(RdmaCounter.OdpInvalidations)).toBeGreaterThan(5);
      // 8. Teardown: nothing left mapped, no page held, the IOMMU domain empty.
      expect(nicB.deregMr(h.odp)).toBe(0);
      expect(h.nicA.deregMr(h.staging)).toBe(0);
      mirror.close();
      mm.exit();
      h.sys.dropFile(h.file);
      expect(h.sys.pagesInUse).toBe(0);
      expect(h.gpu.pagemap.allocatedPages).toBe(0);
      expect(nicB.dev.domain?.mappedBytes).toBe(0);
      expect(h.nicA.dev.domain?.mappedBytes).toBe(0);
      expect(kernel.unbind(nicB.dev).leakedIovaStates).toBe(0);
    });
  }
});

describe("mmapHodgepodge", () => {
  it("lays out only the segments asked for, the THP 2 MiB aligned; refuses bad counts", () => {
    const { mm } = hodgepodge();
    const l = mmapHodgepodge(mm, { anonPages: 3, filePages: 0 });
    expect(l.segments.map((s) => [s.kind, s.first, s.pages])).toEqual([
      ["anon", 0, 3],
      ["thp", 3, 512],
    ]);
    expect((l.base + 3 * PAGE_SIZE) % (2 * 1024 * 1024)).toBe(0);
    expect(l.kindOf(514)).toBe("thp");
    expect(() => l.kindOf(515)).toThrow(RdmaInputError);
    expect(() => l.migrateDevpriv()).toThrow(RdmaInputError);
    expect(() => mmapHodgepodge(mm, { anonPages: -1 })).toThrow(RdmaInputError);
    expect(() => mmapHodgepodge(mm, { anonPages: 0, thp: false, filePages: 0 })).toThrow(RdmaInputError);
  });
});
