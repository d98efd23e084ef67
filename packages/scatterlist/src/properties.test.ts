import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { DmaDirection } from "@dmasim/dma";
import type { IommuMode } from "@dmasim/dma";
import { PAGE_SIZE, physAddr, unsafePhysAddr } from "@dmasim/memory";
import { dmaMapSgtable, dmaUnmapSgtable, sgAllocTable, sgFreeTable, sgSetPhys, sgtableDmaSegments } from "./index.js";
import type { SgInteriorPolicy, SgTable } from "./index.js";
import { deviceRead, firstDifference, makeRig, pattern } from "./test-fixtures.js";
import type { Rig } from "./test-fixtures.js";

// The two iommu-dma implementations (and the paths they share) must give the device the same view of
// any list: the same number of DMA segments, the same lengths, the same bytes read from every segment
// (or the same access error), and nothing left mapped after the unmap.

type Kind = "ram" | "contiguous" | "encrypted" | "p2p-switch" | "p2p-bridge";

interface EntrySpec {
  readonly kind: Kind;
  readonly offset: number;
  readonly len: number;
}

interface Case {
  readonly mode: IommuMode;
  readonly untrusted: boolean;
  readonly confidential: boolean;
  readonly coherent: boolean;
  readonly maskBits: number;
  readonly maxSeg: number;
  readonly boundaryBits: number;
  readonly interior: SgInteriorPolicy;
  readonly entries: readonly EntrySpec[];
}

const entryArb = fc.record({
  kind: fc.constantFrom<Kind>("ram", "ram", "contiguous", "contiguous", "encrypted", "p2p-switch", "p2p-bridge"),
  // Aligned entries half of the time, so merging happens; otherwise any offset.
  offset: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: PAGE_SIZE - 1 })),
  len: fc.oneof(fc.constantFrom(PAGE_SIZE, 2 * PAGE_SIZE), fc.integer({ min: 1, max: 3 * PAGE_SIZE })),
});

const caseArb: fc.Arbitrary<Case> = fc.record({
  mode: fc.constantFrom<IommuMode>("strict", "lazy", "off"),
  untrusted: fc.boolean(),
  confidential: fc.boolean(),
  coherent: fc.boolean(),
  maskBits: fc.constantFrom(32, 40, 64),
  maxSeg: fc.constantFrom(3 * PAGE_SIZE + PAGE_SIZE - 1, 5 * PAGE_SIZE, 16 * PAGE_SIZE, 65536 + 512, 1 << 20),
  boundaryBits: fc.integer({ min: 14, max: 32 }),
  interior: fc.constantFrom<SgInteriorPolicy>("widen", "split"),
  entries: fc.array(entryArb, { minLength: 1, maxLength: 20 }),
});

interface Outcome {
  readonly ret: number;
  /** The dma-debug checks that fired (a list that crosses a boundary in dma-direct mode, …). */
  readonly reports: string[];
  readonly count: number;
  readonly lengths: number[];
  readonly reads: (Uint8Array | string)[];
  readonly expected: Uint8Array[];
}

/** Builds the case's list on a fresh rig: every run sees the same addresses and the same bytes. */
function build(rig: Rig, c: Case): SgTable {
  const { platform } = rig;
  const memory = platform.memory;
  const table = sgAllocTable(platform.trace, c.entries.length);
  let prevEnd = -1;
  let sw = 0;
  let hb = 0;
  c.entries.forEach((e, i) => {
    // The maximum entry size bounds every length, as a list builder honouring the device would.
    const len = Math.min(e.len, c.maxSeg);
    let phys: number;
    if (e.kind === "p2p-switch" || e.kind === "p2p-bridge") {
      const provider = e.kind === "p2p-switch" ? rig.switchP2p : rig.bridgeP2p;
      const at = e.kind === "p2p-switch" ? sw : hb;
      phys = provider.phys + at * 4 * PAGE_SIZE + e.offset;
      if (e.kind === "p2p-switch") sw++;
      else hb++;
    } else if (e.kind === "contiguous" && prevEnd >= 0 && memory.isRam(physAddr(prevEnd), len)) {
      phys = prevEnd;
    } else {
      const pages = Math.ceil((e.offset + len) / PAGE_SIZE) + 1;
      phys = memory.allocator.allocPages(pages) + e.offset;
    }
    if (platform.memory.confidential && memory.isRam(physAddr(phys), len)) {
      const first = Math.floor(phys / PAGE_SIZE);
      const n = Math.floor((phys + len - 1) / PAGE_SIZE) - first + 1;
      if (e.kind === "encrypted") memory.setMemoryEncrypted(unsafePhysAddr(first * PAGE_SIZE), n);
      else memory.setMemoryDecrypted(unsafePhysAddr(first * PAGE_SIZE), n);
    }
    memory.write(physAddr(phys), pattern(len, i + 1));
    sgSetPhys(table, i, unsafePhysAddr(phys), len);
    prevEnd = phys + len;
  });
  return table;
}

/** Nothing stays mapped, and every IOVA comes back once the flush queues and range caches drain. */
function checkClean(rig: Rig, rangesBefore: number): void {
  const { kernel, dev } = rig;
  const iovad = dev.cookie?.iovad;
  if (dev.domain !== undefined && dev.ops === "iommu") {
    expect(dev.domain.mappedBytes).toBe(0);
    kernel.flushAll();
    iovad?.flushRcaches();
    expect(iovad?.liveRanges ?? 0).toBe(rangesBefore);
  }
  expect(kernel.iovaTracker.liveCount(dev.bdf)).toBe(0);
  expect(kernel.debug.entries(dev.bdf)).toHaveLength(0);
  expect(kernel.swiotlb?.stats.used ?? 0).toBe(0);
}

function reports(rig: Rig): string[] {
  const found = rig.kernel.debugReports().map((r) => r.check);
  // Misuse of the two-step API or of the single-mapping API would be a bug of this package.
  expect(found.filter((c) => c.startsWith("iova-") || c === "api-warn" || c.startsWith("unmap-"))).toEqual([]);
  return found;
}

function run(c: Case, impl: "two-step" | "classic"): Outcome {
  const rig = makeRig({
    kernel: { iommuMode: c.mode, debug: "collect" },
    device: { coherent: c.coherent, dmaMaskBits: c.maskBits, maxSegmentSize: c.maxSeg, segBoundaryMask: 2 ** c.boundaryBits - 1 },
    untrusted: c.untrusted,
    confidential: c.confidential,
  });
  const { platform, dev, ep } = rig;
  const table = build(rig, c);
  const iovad = dev.cookie?.iovad;
  const rangesBefore = iovad?.liveRanges ?? 0;
  const ret = dmaMapSgtable(dev, table, DmaDirection.BIDIRECTIONAL, 0, { impl, interior: c.interior });
  if (ret !== 0) {
    // A refused list (an untrusted device cannot bounce P2P MMIO, a 32-bit mask ran out…) leaves nothing.
    expect(table.mapped).toBe(false);
    checkClean(rig, rangesBefore);
    return { ret, reports: reports(rig), count: 0, lengths: [], reads: [], expected: [] };
  }
  const segments = sgtableDmaSegments(table);
  if (dev.ops === "iommu" && !c.untrusted) {
    // The IOVA paths honour the device's limits whatever the list looks like.
    const window = 2 ** c.boundaryBits;
    for (const [addr, len] of segments) {
      expect(len).toBeLessThanOrEqual(c.maxSeg);
      expect(Math.floor(addr / window)).toBe(Math.floor((addr + len - 1) / window));
    }
  }
  // What each segment must hold: the entries' bytes in order, consumed segment by segment.
  const all = new Uint8Array(segments.reduce((n, [, l]) => n + l, 0));
  let at = 0;
  for (let i = 0; i < table.origNents; i++) {
    const bytes = platform.memory.read(physAddr(table.phys[i] ?? 0), table.length[i] ?? 0);
    all.set(bytes, at);
    at += bytes.length;
  }
  expect(at).toBe(all.length);
  const expected: Uint8Array[] = [];
  const reads: (Uint8Array | string)[] = [];
  at = 0;
  for (const [addr, len] of segments) {
    expected.push(all.subarray(at, at + len));
    at += len;
    reads.push(deviceRead(ep, addr, len));
  }
  dmaUnmapSgtable(dev, table, DmaDirection.BIDIRECTIONAL);
  sgFreeTable(table);
  checkClean(rig, rangesBefore);
  return { ret, reports: reports(rig), count: segments.length, lengths: segments.map(([, l]) => l), reads, expected };
}

describe("two-step and classic dma_map_sg give the device the same view", () => {
  it("same segments, same bytes, nothing left mapped (fast-check)", { timeout: 60_000 }, () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const a = run(c, "two-step");
        const b = run(c, "classic");
        expect(a.ret).toBe(b.ret);
        expect(a.reports).toEqual(b.reports);
        expect(a.count).toBe(b.count);
        expect(a.lengths).toEqual(b.lengths);
        for (let k = 0; k < a.count; k++) {
          const ra = a.reads[k];
          const rb = b.reads[k];
          if (typeof ra === "string" || typeof rb === "string") {
            expect(ra).toEqual(rb);
            continue;
          }
          expect(firstDifference(ra ?? new Uint8Array(), rb ?? new Uint8Array())).toBe(-1);
          // And they are the right bytes: the entries' data in list order.
          expect(firstDifference(ra ?? new Uint8Array(), a.expected[k] ?? new Uint8Array())).toBe(-1);
        }
      }),
      { numRuns: 100 },
    );
  });
});
