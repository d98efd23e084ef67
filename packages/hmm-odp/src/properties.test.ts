import { PAGE_SIZE } from "@dmasim/memory";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PROT_READ, PROT_WRITE } from "./constants.js";
import { hmmDmirrorCmd } from "./dmirror.js";
import type { Dmirror } from "./dmirror.js";
import type { Mm } from "./mm.js";
import { PteKind } from "./pte.js";
import { hmmRig } from "./test-fixtures.js";
import { iova } from "@dmasim/iommu";

const N = 16;

type Op =
  | { kind: "cpuWrite" | "devRead" | "devWrite" | "pageRead" | "madvise" | "swapOut" | "migrate" | "numa" | "toDev" | "toSys" | "exclusive" | "fork" | "race"; page: number; value: number }
  | { kind: "mprotect"; page: number; value: number; prot: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constantFrom("cpuWrite", "devRead", "devWrite", "pageRead", "madvise", "swapOut", "migrate", "numa", "toDev", "toSys", "exclusive", "fork", "race"),
    page: fc.integer({ min: 0, max: N - 1 }),
    value: fc.integer({ min: 1, max: 255 }),
  }),
  fc.record({ kind: fc.constant("mprotect"), page: fc.integer({ min: 0, max: N - 1 }), value: fc.constant(0), prot: fc.constantFrom(PROT_READ, PROT_READ | PROT_WRITE) }),
);

/** Every device translation points at the page the CPU page table maps there, or there is none. */
function checkMirror(mm: Mm, d: Dmirror, base: number): void {
  for (let i = 0; i < N; i++) {
    const va = base + i * PAGE_SIZE;
    const t = d.translate(va);
    if (t === undefined) continue;
    const pte = mm.pteAt(va);
    expect(pte).toBeDefined();
    if (pte === undefined) continue;
    let phys: number;
    if (pte.kind === PteKind.DEVICE_PRIVATE) {
      const pgmap = mm.sys.pagemapOf(pte.pfn);
      expect(pgmap?.owner).toBe(d.mdevice);
      phys = pgmap?.backingPhys(pte.pfn) ?? -1;
    } else {
      expect([PteKind.PRESENT, PteKind.ZERO, PteKind.DEVICE_EXCLUSIVE]).toContain(pte.kind);
      phys = pte.pfn * PAGE_SIZE;
    }
    expect(t.phys).toBe(phys);
    if (t.write) expect(pte.write).toBe(true);
  }
}

interface DataOp {
  kind: "cpuWrite" | "cpuRead" | "devRead" | "madvise" | "swapOut" | "migrate" | "numa" | "toDev" | "toSys" | "exclusive" | "fork" | "readOnly" | "readWrite";
  page: number;
  value: number;
}

const dataOpArb: fc.Arbitrary<DataOp> = fc.record({
  // Weighted towards what carries bytes through swap: writes, reclaim and reads back.
  kind: fc.oneof(
    { arbitrary: fc.constantFrom("cpuWrite", "swapOut"), weight: 6 },
    { arbitrary: fc.constantFrom("cpuRead", "devRead"), weight: 3 },
    { arbitrary: fc.constantFrom("madvise", "migrate", "numa", "toDev", "toSys", "exclusive", "fork", "readOnly", "readWrite"), weight: 3 },
  ),
  // Few pages, so that the sequences that matter (write, reclaim, read back, write, reclaim, read) come up.
  page: fc.integer({ min: 0, max: 3 }),
  value: fc.integer({ min: 1, max: 255 }),
});

// Each property runs with device-private memory and with coherent device memory (present ptes to device pages).
const MEMORY = [
  { memory: "device-private", coherent: false },
  { memory: "coherent", coherent: true },
] as const;

describe("properties", { timeout: 60_000 }, () => {
  it.each(MEMORY)("the bytes the CPU and the device read are the last the CPU wrote, through swap (and its cache), migrations, exclusive access and fork ($memory)", ({ coherent }) => {
    // Device writes are left out: dmirror, like lib/test_hmm.c, never dirties the pages it writes, so a
    // clean swap-cache page it wrote is dropped by reclaim, as it would be in the kernel.
    fc.assert(
      fc.property(fc.array(dataOpArb, { minLength: 20, maxLength: 60 }), (ops) => {
        const { mm, open, sys, mdev0 } = hmmRig({ coherent });
        const base = mm.mmap(N * PAGE_SIZE);
        const d = open();
        const expected = new Uint8Array(N);
        const writable = new Array<boolean>(N).fill(true);
        const cpuByte = (i: number): number => mm.read(base + i * PAGE_SIZE, 1)[0] ?? -1;
        for (const op of ops) {
          const va = base + op.page * PAGE_SIZE;
          const cmd = hmmDmirrorCmd(va, 1);
          switch (op.kind) {
            case "cpuWrite":
              if (writable[op.page] === true) {
                mm.write(va, new Uint8Array([op.value]));
                expected[op.page] = op.value;
              }
              break;
            case "cpuRead":
              expect(cpuByte(op.page)).toBe(expected[op.page]);
              break;
            case "devRead":
              expect(d.read(cmd)).toBe(0);
              expect(cmd.ptr[0]).toBe(expected[op.page]);
              break;
            case "madvise":
              mm.madvise(va, PAGE_SIZE, 4);
              expected[op.page] = 0;
              break;
            case "swapOut":
              mm.swapOut(va);
              break;
            case "migrate":
              mm.migratePage(va);
              break;
            case "numa":
              mm.numaScan(va, PAGE_SIZE);
              break;
            case "toDev":
              d.migrateToDev(cmd);
              break;
            case "toSys":
              d.migrateToSys(cmd);
              break;
            case "exclusive":
              if (writable[op.page] === true) d.exclusive(cmd);
              break;
            case "fork": {
              const child = mm.fork();
              if (writable[op.page] === true) child.write(va, new Uint8Array([op.value ^ 0xff]));
              child.exit();
              break;
            }
            case "readOnly":
            case "readWrite":
              mm.mprotect(va, PAGE_SIZE, op.kind === "readOnly" ? PROT_READ : PROT_READ | PROT_WRITE);
              writable[op.page] = op.kind === "readWrite";
              break;
          }
        }
        for (let i = 0; i < N; i++) expect(cpuByte(i)).toBe(expected[i]);
        d.close();
        mm.exit();
        expect(sys.pagesInUse).toBe(0);
        expect(sys.swapSlotsInUse).toBe(0);
        expect(mdev0.pagemap.allocatedPages).toBe(0);
      }),
      { numRuns: 100, seed: 7 },
    );
  });

  it.each(MEMORY)("after any sequence of mm operations, faults, migrations and injected invalidations, every device translation is the CPU's page or nothing, and nothing leaks ($memory)", ({ coherent }) => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 30 }), (ops) => {
        const rig = hmmRig({ coherent });
        const { mm, mdev0, mdev1, dev0, sys } = rig;
        const base = mm.mmap(N * PAGE_SIZE);
        const dma = mdev0.open(mm, { dev: dev0, start: base, size: N * PAGE_SIZE });
        const page = mdev1.open(mm);
        const mirrors = [dma, page];
        const window = dma.dma?.map.state.addr ?? 0;
        for (const op of ops) {
          const va = base + op.page * PAGE_SIZE;
          const cmd = hmmDmirrorCmd(va, 1);
          switch (op.kind) {
            case "cpuWrite":
              try {
                mm.write(va, new Uint8Array([op.value]));
              } catch {
                // a read-only page: SIGSEGV, nothing changed
              }
              break;
            case "devRead":
              dma.deviceRead(va, new Uint8Array(8));
              break;
            case "devWrite":
              dma.deviceWrite(va, new Uint8Array([op.value]));
              break;
            case "pageRead":
              page.read(cmd);
              break;
            case "madvise":
              mm.madvise(va, PAGE_SIZE, 4);
              break;
            case "mprotect":
              mm.mprotect(va, PAGE_SIZE, op.prot);
              break;
            case "swapOut":
              mm.swapOut(va);
              break;
            case "migrate":
              mm.migratePage(va);
              break;
            case "numa":
              mm.numaScan(va, PAGE_SIZE);
              break;
            case "toDev":
              page.migrateToDev(cmd);
              break;
            case "toSys":
              page.migrateToSys(cmd);
              break;
            case "exclusive":
              page.exclusive(cmd);
              break;
            case "fork": {
              const child = mm.fork();
              try {
                child.write(va, new Uint8Array([op.value]));
              } catch {
                // read-only in the child too
              }
              child.exit();
              break;
            }
            case "race": {
              let fired = false;
              dma.inject["before-driver-lock"] = () => {
                if (fired) return;
                fired = true;
                mm.migratePage(va);
              };
              dma.deviceRead(base, new Uint8Array(N * PAGE_SIZE));
              dma.inject = {};
              break;
            }
          }
          for (const d of mirrors) checkMirror(mm, d, base);
        }
        for (const d of mirrors) d.close();
        mm.exit();
        expect(sys.pagesInUse).toBe(0);
        expect(sys.swapSlotsInUse).toBe(0);
        expect(mdev0.pagemap.allocatedPages + mdev1.pagemap.allocatedPages).toBe(0);
        for (let i = 0; i < N; i++) expect(dev0.domain?.iovaToPhys(iova(window + i * PAGE_SIZE))).toBeUndefined();
      }),
      { numRuns: 40, seed: 12 },
    );
  });
});
