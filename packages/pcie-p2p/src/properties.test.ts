import { Counter } from "./counters.js";
import { MiB, physAddr } from "@dmasim/memory";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PcieAccessError } from "./errors.js";
import { A, B, RW, bytes, sameBytes, switchSpec, withDomains } from "./test-fixtures.js";
import { iova } from "@dmasim/iommu";
import { unsafeBusAddr, unsafeDmaAddr } from "./index.js";

const PAGE = 4096;
const IOVA_BASE = 0x10000000; // outside the host bridge window: see the iova_reserve_pci_windows test

describe("fabric properties", () => {
  it("a device read through the IOMMU returns exactly what memory holds behind the mapping", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: 4095 }), { minLength: 1, maxLength: 8 }),
        fc.nat(),
        fc.nat(),
        (pfns, off, len) => {
          const p = withDomains(switchSpec({ memory: { ramBytes: 64 * MiB } }));
          const dom = p.endpoint(A).iommu!.domainOf(A)!;
          pfns.forEach((pfn, i) => {
            p.memory.write(physAddr(pfn * PAGE), bytes(PAGE, pfn));
            dom.map(iova(IOVA_BASE + i * PAGE), physAddr(pfn * PAGE), PAGE, RW);
          });
          const total = pfns.length * PAGE;
          const start = off % total;
          const n = len % (total - start + 1);
          const behind = new Uint8Array(total);
          pfns.forEach((pfn, i) => { behind.set(p.memory.read(physAddr(pfn * PAGE), PAGE), i * PAGE); });
          expect(sameBytes(p.endpoint(A).dmaRead(unsafeDmaAddr(IOVA_BASE + start), n), behind.subarray(start, start + n))).toBe(true);
          expect(p.trace.counters.get(Counter.BytesToMemory)).toBe(n);
        },
      ),
      { numRuns: 100 },
    );
  });

  it("a failing TLP stops the access: exactly the bytes before the first unmapped page land", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: PAGE - 1 }), fc.integer({ min: 1, max: 5 * PAGE }), (mapped, start, len) => {
        const p = withDomains(switchSpec({ memory: { ramBytes: 64 * MiB } }));
        const dom = p.endpoint(A).iommu!.domainOf(A)!;
        dom.map(iova(IOVA_BASE), physAddr(0x100000), mapped * PAGE, RW);
        const data = bytes(len, start);
        const room = mapped * PAGE - start;
        let completed = len;
        try {
          p.endpoint(A).dmaWrite(unsafeDmaAddr(IOVA_BASE + start), data);
        } catch (e) {
          expect(e).toBeInstanceOf(PcieAccessError);
          completed = (e as PcieAccessError).completed;
          expect((e as PcieAccessError).addr).toBe(IOVA_BASE + mapped * PAGE);
        }
        expect(completed).toBe(Math.min(len, room));
        expect(sameBytes(p.memory.read(physAddr(0x100000 + start), completed), data.subarray(0, completed))).toBe(true);
        expect(p.memory.read(physAddr(0x100000 + start + completed), 8 * PAGE - start - completed).every((x) => x === 0)).toBe(true);
      }),
      { numRuns: 100 },
    );
  });

  it("a P2P write lands in the peer's BAR, the CPU sees it, and a read back returns it", () => {
    const p = withDomains(switchSpec({ memory: { ramBytes: 64 * MiB } }));
    const bar = p.endpoint(B).bars[0]!;
    fc.assert(
      fc.property(fc.integer({ min: 0, max: bar.size - 1 }), fc.integer({ min: 0, max: 3 * PAGE }), fc.nat(255), (off, len, seed) => {
        const n = Math.min(len, bar.size - off);
        const data = bytes(n, seed);
        const before = p.trace.counters.get(Counter.BytesPeerViaSwitch);
        p.endpoint(A).dmaWrite(unsafeBusAddr(bar.bus + off), data);
        expect(sameBytes(p.memory.read(physAddr(bar.phys + off), n), data)).toBe(true);
        expect(sameBytes(p.endpoint(A).dmaRead(unsafeBusAddr(bar.bus + off), n), data)).toBe(true);
        expect(p.trace.counters.get(Counter.BytesPeerViaSwitch) - before).toBe(2 * n);
      }),
      { numRuns: 100 },
    );
    expect(p.trace.counters.get(Counter.TlpsToMemory)).toBe(0);
  });
});
