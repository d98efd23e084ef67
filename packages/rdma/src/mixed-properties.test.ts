import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MADV_DONTNEED, PROT_READ, PROT_WRITE, hmmDmirrorCmd, mmuIntervalSetSeq } from "@dmasim/hmm-odp";
import type { Mm } from "@dmasim/hmm-odp";
import { dmaBufPut } from "@dmasim/dmabuf";
import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import { kSegAttach } from "./internal.js";
import { OK } from "./test-fixtures.js";
import { mixedRead, mixedRig, mixedStaleEntries, mixedWrite, tagBytes } from "./test-mixed.js";
import type { MixedKind, MixedRig } from "./test-mixed.js";

type OpKind = "nicWrite" | "nicRead" | "nicCross" | "cpuWrite" | "munmap" | "madvise" | "mprotect" | "fork" | "toDev" | "toSys" | "gpuMigrate" | "gpuPressure" | "vfioRevoke" | "vfioEnable" | "vfioReset";
interface Op {
  kind: OpKind;
  pick: number;
  value: number;
}

const opArb: fc.Arbitrary<Op> = fc.record({
  kind: fc.constantFrom<OpKind>("nicWrite", "nicWrite", "nicRead", "nicRead", "nicCross", "cpuWrite", "munmap", "madvise", "mprotect", "fork", "toDev", "toSys", "gpuMigrate", "gpuMigrate", "gpuPressure", "vfioRevoke", "vfioEnable", "vfioReset"),
  pick: fc.nat(),
  value: fc.integer({ min: 1, max: 1_000_000 }),
});

/** Pages that cover every kind (two of the GPU buffer's VRAM blocks, two of its RAM blocks). */
function pageOf(r: MixedRig, pick: number): number {
  const at = (kind: MixedKind, j: number): number => r.part(kind).first + j;
  const pages = [at("anon", 0), at("anon", 5), at("thp", 0), at("thp", 300), at("file", 0), at("file", 9), at("bar-switch", 2), at("bar-bridge", 3), at("devpriv", 0), at("devpriv", 7), at("gpu-vram", 0), at("gpu-vram", 17), at("gpu-vram", 40), at("gpu-vram", 63), at("vfio-bar", 0), at("vfio-bar", 15)];
  return pages[pick % pages.length] ?? 0;
}

/** Last page of a segment and first page of the next: where a WR crosses from one source to another. */
function boundaryOf(r: MixedRig, pick: number): [number, number] {
  const b = [r.part("gpu-vram").first, r.part("file").first, r.part("vfio-bar").first][pick % 3] ?? 1;
  return [b - 1, b];
}

/** The reference: the first 64 bytes each page should hold, or "gone" (unmapped); read-only pages. */
class Oracle {
  readonly bytes = new Map<number, Uint8Array | "gone">();
  readonly readOnly = new Set<number>();
  constructor(r: MixedRig) {
    for (let p = 0; p < r.pages; p++) this.bytes.set(p, tagBytes(p));
  }
}

function run(r: MixedRig, ops: readonly Op[], invariant = true): void {
  const o = new Oracle(r);
  const children: Mm[] = [];
  const { mm, mirror } = r;
  const usable = (p: number): boolean => o.bytes.get(p) !== "gone" && !o.readOnly.has(p) && (r.kindOf(p) !== "vfio-bar" || r.vfio.memoryEnabled);
  for (const op of ops) {
    const p = pageOf(r, op.pick);
    const kind = r.kindOf(p);
    const part = r.part(kind);
    const addr = part.at + (p - part.first) * PAGE_SIZE;
    const va = kind !== "gpu-vram" && kind !== "vfio-bar";
    const want = o.bytes.get(p);
    switch (op.kind) {
      case "nicWrite": {
        const st = mixedWrite(r, p, tagBytes(op.value));
        expect({ op: op.kind, p, kind, ok: st === OK }).toEqual({ op: op.kind, p, kind, ok: usable(p) });
        if (st === OK) o.bytes.set(p, tagBytes(op.value));
        break;
      }
      case "nicRead": {
        const got = mixedRead(r, p);
        if (usable(p)) expect({ p, kind, got }).toEqual({ p, kind, got: want });
        else expect(typeof got).toBe("number");
        break;
      }
      case "nicCross": {
        // One WR of 128 bytes: the last 64 of one segment's page, the first 64 of the next segment's.
        const [a, b] = boundaryOf(r, op.pick);
        const bytes = new Uint8Array(128);
        bytes.set(tagBytes(op.value), 0);
        bytes.set(tagBytes(op.value + 1), 64);
        const st = mixedWrite(r, a, bytes, PAGE_SIZE - 64);
        expect({ op: op.kind, a, b, ok: st === OK }).toEqual({ op: op.kind, a, b, ok: usable(a) && usable(b) });
        if (st === OK) o.bytes.set(b, tagBytes(op.value + 1));
        break;
      }
      case "cpuWrite":
        if (!usable(p)) break;
        if (kind === "gpu-vram") r.gpuVram.cpuWrite(r.vram, (p - part.first) * PAGE_SIZE, tagBytes(op.value));
        else if (kind === "vfio-bar") r.platform.memory.write(unsafePhysAddr(r.vfioPhys + (p - part.first) * PAGE_SIZE), tagBytes(op.value));
        else mm.write(addr, tagBytes(op.value));
        o.bytes.set(p, tagBytes(op.value));
        break;
      case "munmap":
        if (kind === "anon" || kind === "devpriv" || kind === "thp") {
          expect(mm.munmap(addr, PAGE_SIZE)).toBe(0);
          o.bytes.set(p, "gone");
        }
        break;
      case "madvise":
        if (va && want !== "gone" && kind !== "bar-switch" && kind !== "bar-bridge") {
          expect(mm.madvise(addr, PAGE_SIZE, MADV_DONTNEED)).toBe(0);
          if (kind !== "file") o.bytes.set(p, new Uint8Array(64));
        }
        break;
      case "mprotect":
        if (va && want !== "gone") {
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
      case "gpuMigrate": {
        const block = Math.floor((op.value % r.part("gpu-vram").pages) / 16);
        expect(r.gpuVram.migrate(r.vram, op.value % 2 === 0 ? "vram" : "ram", [block])).toBeGreaterThanOrEqual(0);
        break;
      }
      case "gpuPressure": {
        // Another buffer wants all of VRAM: the exporter evicts ours to RAM (TTM's LRU eviction), then
        // the other buffer goes away.
        const big = r.gpuVram.allocate(r.gpuVram.nBlocks * r.gpuVram.blockBytes);
        dmaBufPut(big);
        break;
      }
      case "vfioReset":
        // VFIO_DEVICE_RESET: revoke, reset, restore (when memory was enabled).
        expect(r.vfio.reset().done).toBe(true);
        break;
      case "vfioRevoke":
        expect(r.vfio.setMemoryEnable(false).done).toBe(true);
        break;
      case "vfioEnable":
        expect(r.vfio.setMemoryEnable(true).done).toBe(true);
        break;
    }
    // No live MTT entry leads to memory that no longer backs the MR at that address.
    if (invariant) expect(mixedStaleEntries(r)).toEqual([]);
  }
  expect(r.vfio.setMemoryEnable(true).done).toBe(true);
  // No write lost: every page still there holds what the oracle says, for the NIC and for its CPU view.
  for (let i = 0; i < 16; i++) {
    const p = pageOf(r, i);
    const want = o.bytes.get(p);
    if (want === "gone" || want === undefined) continue;
    if (!o.readOnly.has(p)) expect({ p, kind: r.kindOf(p), nic: mixedRead(r, p) }).toEqual({ p, kind: r.kindOf(p), nic: want });
    const part = r.part(r.kindOf(p));
    const j = p - part.first;
    const cpu = part.kind === "gpu-vram" ? r.gpuVram.cpuRead(r.vram, j * PAGE_SIZE, 64) : part.kind === "vfio-bar" ? r.platform.memory.read(unsafePhysAddr(r.vfioPhys + j * PAGE_SIZE), 64) : mm.read(part.at + j * PAGE_SIZE, 64);
    expect({ p, cpu }).toEqual({ p, cpu: want });
  }
  // Nothing leaks: IOVA, IOMMU mappings, attachments, notifiers, pages.
  for (const c of children) c.exit();
  expect(r.nicB.deregMr(r.mr)).toBe(0);
  expect(r.nicA.deregMr(r.staging)).toBe(0);
  expect(r.vram.attachments.length).toBe(0);
  expect(r.vfioBuf.attachments.length).toBe(0);
  expect(r.mm.subscriptions.itree.filter((n) => n.owner.includes(".mixed")).length).toBe(0);
  mirror.close();
  mm.exit();
  r.sys.dropFile(r.file);
  expect(r.sys.pagesInUse).toBe(0);
  expect(r.nicB.dev.domain?.mappedBytes).toBe(0);
  expect(r.nicA.dev.domain?.mappedBytes).toBe(0);
  expect(r.nicB.kernel.unbind(r.nicB.dev).leakedIovaStates).toBe(0);
  expect(r.dmabufs.debug.reports()).toEqual([]);
}

const opsArb = fc.array(opArb, { minLength: 4, maxLength: 40, size: "max" });

describe("property: one mixed MR (user VA + dma-bufs), any interleaving of mm operations, migrations, revokes and traffic", () => {
  it("the NIC only reaches memory backing the MR at that address, no write is lost, nothing leaks", () => {
    fc.assert(
      fc.property(opsArb, (ops) => {
        run(mixedRig(), ops);
      }),
      { numRuns: 20, seed: 0x0e1 },
    );
  });

  it("the same with the NIC's batched strategy (one IOTLB sync per run of faulted VA pages)", () => {
    fc.assert(
      fc.property(opsArb, (ops) => {
        run(mixedRig({ odpDma: "hmm_dma_map batched" }), ops);
      }),
      { numRuns: 8, seed: 0x0e4 },
    );
  });

  it("fails when the mm's zap is skipped (the VA segments' callbacks only bump the sequence)", () => {
    const out = fc.check(
      fc.property(opsArb, (ops) => {
        const r = mixedRig();
        for (const s of r.umem.segments) {
          if (s.kind === "va") s.notifier.ops = { invalidate: (sub, _range, cur) => { mmuIntervalSetSeq(sub, cur); return true; } };
        }
        run(r, ops);
      }),
      { numRuns: 40, seed: 0x0e2 },
    );
    expect(out.failed).toBe(true);
    // Caught by the per-step check: a live MTT entry leading to memory that no longer backs the MR.
    expect(String(out.errorInstance)).toMatch(/^AssertionError: expected \[ \{ page: .* to deeply equal \[\]/);
  });

  it("fails when the GPU exporter's invalidate_mappings is ignored", () => {
    const out = fc.check(
      fc.property(opsArb, (ops) => {
        const r = mixedRig();
        for (const s of r.umem.segments) {
          if (s.kind === "dmabuf" && s.source === "gpu" && s[kSegAttach]?.importerOps !== undefined) (s[kSegAttach].importerOps as { invalidateMappings?: (a: unknown) => void }).invalidateMappings = () => undefined;
        }
        run(r, ops);
      }),
      { numRuns: 40, seed: 0x0e3 },
    );
    expect(out.failed).toBe(true);
    // Caught by the per-step check: a live MTT entry leading to memory that no longer backs the MR.
    expect(String(out.errorInstance)).toMatch(/^AssertionError: expected \[ \{ page: .* to deeply equal \[\]/);
  });
});
