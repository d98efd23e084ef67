import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Trace } from "@dmasim/trace";
import { EntryKind } from "./classify.js";
import type { Classified } from "./classify.js";
import { sgLayout } from "./layout.js";
import { sgAllocTable, sgSetPhys } from "./sg-table.js";
import { unsafePhysAddr } from "@dmasim/memory";

// sgLayout computes in one pass, on positions relative to the IOVA, what upstream computes in two loops
// on real addresses. This checks it against a plain transcription of those loops (iommu_dma_map_sg and
// __finalise_sg in drivers/iommu/dma-iommu.c), run on an IOVA placed where alloc_iova_fast could put it.

interface RefEntry {
  readonly phys: number;
  readonly len: number;
  /** A P2P entry reached by bus address (sg_dma_mark_bus_address): left out of the IOVA. */
  readonly bus: boolean;
}

interface RefResult {
  readonly iovaLen: number;
  readonly paddedLen: number[];
  readonly segments: { first: number; addr: number; len: number }[];
}

function roundUpPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** The two upstream loops, with `%` and absolute addresses; `slot` picks the size-aligned IOVA base. */
function reference(entries: readonly RefEntry[], granule: number, segMask: number, maxSeg: number, slot: number): RefResult {
  const window = segMask + 1;
  const sIovaOff: number[] = [];
  const sLength: number[] = [];
  const sIovaLen: number[] = [];
  let iovaLen = 0;
  let prev = -1;
  entries.forEach((e, i) => {
    const off = e.phys % granule;
    const padLen = (window - (iovaLen % window)) % window;
    sIovaOff[i] = off;
    sLength[i] = e.len;
    if (e.bus) return;
    const aligned = Math.ceil((e.len + off) / granule) * granule;
    sIovaLen[i] = aligned;
    if (padLen !== 0 && padLen < aligned - 1) {
      sIovaLen[prev] = (sIovaLen[prev] ?? 0) + padLen;
      iovaLen += padLen;
    }
    iovaLen += aligned;
    prev = i;
  });
  // iommu_dma_alloc_iova: the size goes to a power of two of granules, and the range is aligned to it.
  const base = slot * roundUpPow2(Math.max(1, iovaLen / granule)) * granule;
  const segments: { first: number; addr: number; len: number }[] = [];
  let dmaAddr = base;
  let curLen = 0;
  entries.forEach((e, i) => {
    if (e.bus) {
      segments.push({ first: i, addr: -1, len: e.len });
      curLen = 0;
      return;
    }
    const off = sIovaOff[i] ?? 0;
    const len = sLength[i] ?? 0;
    const last = segments.at(-1);
    if (curLen !== 0 && off === 0 && dmaAddr % window !== 0 && maxSeg - curLen >= len && last !== undefined) {
      curLen += len;
      last.len = curLen;
    } else {
      curLen = len;
      segments.push({ first: i, addr: dmaAddr - base + off, len });
    }
    dmaAddr += sIovaLen[i] ?? 0;
    if (len + off < (sIovaLen[i] ?? 0)) curLen = 0;
  });
  return { iovaLen, paddedLen: entries.map((e, i) => (e.bus ? 0 : (sIovaLen[i] ?? 0))), segments };
}

const GRANULE = 4096;

const entryArb = fc.record({
  page: fc.integer({ min: 1, max: 1 << 20 }),
  offset: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: GRANULE - 1 })),
  len: fc.oneof(fc.constantFrom(GRANULE, 2 * GRANULE, 16 * GRANULE), fc.integer({ min: 1, max: 5 * GRANULE })),
  bus: fc.integer({ min: 0, max: 9 }).map((n) => n < 2),
});

describe("sgLayout", () => {
  it("gives upstream's IOVA length, padding and DMA segments (fast-check)", () => {
    fc.assert(
      fc.property(
        fc.array(entryArb, { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 13, max: 40 }),
        fc.constantFrom(GRANULE - 1, 3 * GRANULE, 16 * GRANULE, 65536, 65536 + 512, 2 ** 32 - 1),
        fc.integer({ min: 0, max: 64 }),
        (specs, boundaryBits, maxSeg, slot) => {
          const entries = specs.map((s) => ({ phys: s.page * GRANULE + s.offset, len: s.len, bus: s.bus }));
          const segMask = 2 ** boundaryBits - 1;
          const table = sgAllocTable(new Trace(), entries.length);
          const kinds = new Uint8Array(entries.length);
          const busAddr = new Float64Array(entries.length);
          entries.forEach((e, i) => {
            sgSetPhys(table, i, unsafePhysAddr(e.phys), e.len);
            kinds[i] = e.bus ? EntryKind.BUS_ADDR : EntryKind.MEMORY;
            busAddr[i] = e.bus ? e.phys : 0;
          });
          const cls: Classified = { kinds, busAddr, anyP2p: entries.some((e) => e.bus) };
          const lay = sgLayout(table, entries.length, cls, GRANULE, segMask, maxSeg);
          const ref = reference(entries, GRANULE, segMask, maxSeg, slot);
          expect(lay.iovaLen).toBe(ref.iovaLen);
          entries.forEach((e, i) => {
            if (!e.bus) expect(lay.paddedLen[i]).toBe(ref.paddedLen[i]);
          });
          const got = Array.from({ length: lay.count }, (_, k) => ({
            first: lay.segFirst[k] ?? -1,
            addr: kinds[lay.segFirst[k] ?? 0] === EntryKind.BUS_ADDR ? -1 : (lay.segPos[k] ?? 0),
            len: lay.segLen[k] ?? 0,
          }));
          expect(got).toEqual(ref.segments);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
