import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MADV_DONTNEED, PROT_READ, PROT_WRITE, hmmDmirrorCmd } from "@dmasim/hmm-odp";
import type { Mm } from "@dmasim/hmm-odp";
import { PAGE_SIZE } from "@dmasim/memory";
import { IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH, IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_NO_FAULT, IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_WRITE, IB_UVERBS_ADVISE_MR_FLAG_FLUSH } from "./constants.js";
import { OK, pattern } from "./test-fixtures.js";
import { expectMttMatchesCpu, hodgepodge, initialBytes, nicRead, nicWrite } from "./test-hodgepodge.js";
import type { Hodgepodge } from "./test-hodgepodge.js";

type OpKind = "nicWrite" | "nicRead" | "cpuWrite" | "munmap" | "madvise" | "mprotect" | "fork" | "toDev" | "toSys" | "swapOut" | "numa" | "prefetch";
interface Op {
  kind: OpKind;
  /** Picks a page of the MR (modulo its page count, biased to the small segments). */
  pick: number;
  value: number;
}

const opArb: fc.Arbitrary<Op> = fc.record({
  kind: fc.constantFrom<OpKind>("nicWrite", "nicWrite", "nicRead", "nicRead", "cpuWrite", "munmap", "madvise", "mprotect", "fork", "toDev", "toDev", "toSys", "swapOut", "numa", "prefetch"),
  pick: fc.nat(),
  value: fc.integer({ min: 1, max: 1_000_000 }),
});

/**
 * A page of the MR, from a dozen that cover every segment (two anonymous, two of the THP, two of the
 * file, one of each BAR, four that migrate), so that operations keep meeting the same pages.
 */
function pageOf(h: Hodgepodge, pick: number): number {
  const at = (kind: string, j: number): number => (h.segments.find((s) => s.kind === kind)?.first ?? 0) + j;
  const pages = [at("anon", 0), at("anon", 5), at("thp", 0), at("thp", 300), at("file", 0), at("file", 9), at("bar-switch", 2), at("bar-bridge", 3), at("devpriv", 0), at("devpriv", 1), at("devpriv", 7), at("devpriv", 15)];
  return pages[pick % pages.length] ?? 0;
}

/**
 * The reference the model is checked against: the first 64 bytes each page of the MR should hold, or
 * "gone" (unmapped), and which pages are read-only now.
 */
class Oracle {
  readonly bytes = new Map<number, Uint8Array | "gone">();
  readonly readOnly = new Set<number>();
  constructor(h: Hodgepodge) {
    for (let p = 0; p < h.pages; p++) this.bytes.set(p, initialBytes(h, p));
  }
}

function run(h: Hodgepodge, ops: readonly Op[]): void {
  const o = new Oracle(h);
  const children: Mm[] = [];
  const { mm, base, mirror } = h;
  for (const op of ops) {
    const p = pageOf(h, op.pick);
    const addr = base + p * PAGE_SIZE;
    const kind = h.kindOf(p);
    const want = o.bytes.get(p);
    const usable = want !== "gone" && !o.readOnly.has(p);
    switch (op.kind) {
      case "nicWrite": {
        const st = nicWrite(h, p, op.value);
        // A writable MR: every fault asks for write, so a read-only or unmapped page refuses the NIC.
        expect({ op: op.kind, p, ok: st === OK }).toEqual({ op: op.kind, p, ok: usable });
        if (st === OK) o.bytes.set(p, pattern(op.value));
        break;
      }
      case "nicRead": {
        const got = nicRead(h, p);
        if (usable) expect({ p, kind, got }).toEqual({ p, kind, got: want });
        else expect(typeof got).toBe("number");
        break;
      }
      case "cpuWrite":
        if (usable) {
          mm.write(addr, pattern(op.value));
          o.bytes.set(p, pattern(op.value));
        }
        break;
      case "munmap":
        if (kind === "anon" || kind === "devpriv" || kind === "thp") {
          expect(mm.munmap(addr, PAGE_SIZE)).toBe(0);
          o.bytes.set(p, "gone");
        }
        break;
      case "madvise":
        if (want !== "gone" && kind !== "bar-switch" && kind !== "bar-bridge") {
          expect(mm.madvise(addr, PAGE_SIZE, MADV_DONTNEED)).toBe(0);
          // Private anonymous memory comes back zeroed; the shared file's page cache keeps its bytes.
          if (kind !== "file") o.bytes.set(p, new Uint8Array(64));
        }
        break;
      case "mprotect":
        if (want !== "gone") {
          const ro = op.value % 2 === 0;
          expect(mm.mprotect(addr, PAGE_SIZE, ro ? PROT_READ : PROT_READ | PROT_WRITE)).toBe(0);
          if (ro) o.readOnly.add(p);
          else o.readOnly.delete(p);
        }
        break;
      case "fork":
        if (children.length < 2) children.push(mm.fork());
        break;
      case "toDev":
        if (kind === "devpriv" || kind === "anon") mirror.migrateToDev(hmmDmirrorCmd(addr, 1));
        break;
      case "toSys":
        if (kind === "devpriv" || kind === "anon") mirror.migrateToSys(hmmDmirrorCmd(addr, 1));
        break;
      case "swapOut":
        if (want !== "gone" && kind === "anon") mm.swapOut(addr);
        break;
      case "numa":
        if (want !== "gone") mm.numaScan(addr, PAGE_SIZE);
        break;
      case "prefetch": {
        const advice = [IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH, IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_WRITE, IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_NO_FAULT][op.value % 3] ?? 0;
        h.nicB.adviseMr(h.pdB, advice, op.value % 2 === 0 ? IB_UVERBS_ADVISE_MR_FLAG_FLUSH : 0, [{ addr, length: PAGE_SIZE, lkey: h.odp.lkey }]);
        if (op.value % 5 === 0) h.nicB.flushWork();
        break;
      }
    }
    // The NIC never reaches a page the process no longer maps at that address.
    expectMttMatchesCpu(h);
  }
  h.nicB.flushWork();
  // No write lost: every page still mapped holds what the oracle says, for the CPU and for the NIC.
  for (let p = 0; p < h.pages; p += p >= 16 && p < 528 ? 37 : 1) {
    const want = o.bytes.get(p);
    if (want === "gone" || want === undefined) continue;
    expect({ p, cpu: mm.read(base + p * PAGE_SIZE, 64) }).toEqual({ p, cpu: want });
    if (!o.readOnly.has(p)) expect({ p, nic: nicRead(h, p) }).toEqual({ p, nic: want });
  }
  // Nothing leaks: every page, device page, IOVA link and mapping goes back.
  for (const c of children) c.exit();
  expect(h.nicB.deregMr(h.odp)).toBe(0);
  expect(h.nicA.deregMr(h.staging)).toBe(0);
  h.nicB.flushWork();
  mirror.close();
  mm.exit();
  h.sys.dropFile(h.file);
  expect(h.sys.pagesInUse).toBe(0);
  expect(h.sys.swapSlotsInUse).toBe(0);
  expect(h.gpu.pagemap.allocatedPages).toBe(0);
  expect(h.nicB.dev.domain?.mappedBytes).toBe(0);
  expect(h.nicA.dev.domain?.mappedBytes).toBe(0);
  expect(h.kernel.unbind(h.nicB.dev).leakedIovaStates).toBe(0);
}

describe("property: one ODP MR over a hodgepodge, any interleaving of mm operations, migrations and traffic", () => {
  it("the NIC only reaches pages the process maps there, no write is lost, nothing leaks (explicit MR)", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 4, maxLength: 40, size: "max" }), (ops) => {
        run(hodgepodge(), ops);
      }),
      { numRuns: 25, seed: 0x0d9 },
    );
  });

  it("the same with an implicit MR (1 GiB children made and destroyed on demand)", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 4, maxLength: 40, size: "max" }), (ops) => {
        run(hodgepodge({ implicit: true }), ops);
      }),
      { numRuns: 12, seed: 0x0da },
    );
  });

  it("the same with the batched hmm_dma_map variant (one IOTLB sync per run of faulted pages)", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 4, maxLength: 40, size: "max" }), (ops) => {
        run(hodgepodge({ odpDma: "hmm_dma_map batched" }), ops);
      }),
      { numRuns: 10, seed: 0x0db },
    );
  });
});
