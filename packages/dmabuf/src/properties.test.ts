import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import { DmaBufImporter, GpuVramExporter, VfioPciCoreDevice, dmaBufPut } from "./index.js";
import type { DmaBuf, DmaBufPhysList } from "./index.js";
import { FAR_GPU, GPU, dmaBufRig, firstDiff } from "./test-fixtures.js";

const BLOCK = 16 * PAGE_SIZE;
const BLOCKS = 4;
const SIZE = BLOCK * BLOCKS;

type Op =
  | { kind: "migrate"; buf: number; to: "vram" | "ram"; blocks: number[] }
  | { kind: "read" | "write"; imp: number; offset: number; value: number }
  | { kind: "advance"; ns: number }
  | { kind: "pressure" }
  | { kind: "disable" | "enable" | "reset" | "vfioRead" };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("migrate" as const), buf: fc.integer({ min: 0, max: 1 }), to: fc.constantFrom("vram" as const, "ram" as const), blocks: fc.uniqueArray(fc.integer({ min: 0, max: BLOCKS - 1 }), { maxLength: BLOCKS }) }),
  fc.record({ kind: fc.constantFrom("read" as const, "write" as const), imp: fc.integer({ min: 0, max: 3 }), offset: fc.integer({ min: 0, max: SIZE - 64 }), value: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant("advance" as const), ns: fc.integer({ min: 0, max: 200_000 }) }),
  fc.record({ kind: fc.constantFrom("pressure" as const, "disable" as const, "enable" as const, "reset" as const, "vfioRead" as const) }),
);

/** Every range of `inner` lies inside some range of `outer`, with the same P2P bit. */
function within(inner: DmaBufPhysList, outer: DmaBufPhysList): boolean {
  for (let i = 0; i < inner.nrRanges; i++) {
    const s = inner.phys[i] ?? 0;
    const e = s + (inner.len[i] ?? 0);
    let ok = false;
    for (let j = 0; j < outer.nrRanges && !ok; j++) {
      const os = outer.phys[j] ?? 0;
      ok = s >= os && e <= os + (outer.len[j] ?? 0) && inner.isP2p(i) === outer.isP2p(j);
    }
    if (!ok) return false;
  }
  return true;
}

describe("dma-buf under interleaved migrations, revokes and maps", () => {
  it("no device reaches memory its buffer no longer holds, no migrated byte is lost, nothing leaks", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => {
        // The exporter manages 12 blocks of VRAM: two buffers of 4 and up to two of 4 more, so pressure is real.
        const rig = dmaBufRig({ debug: "throw" });
        const { sys, importer, platform } = rig;
        const pagesBefore = platform.memory.allocator.allocatedPages;
        const gpu = new GpuVramExporter(sys, { bdf: GPU, blockBytes: BLOCK, vramBytes: 12 * BLOCK });
        const bufs: DmaBuf[] = [gpu.allocate(SIZE), gpu.allocate(SIZE)];
        const shadow = bufs.map(() => new Uint8Array(SIZE));
        const imps = bufs.flatMap((b) => (["sgt", "phys"] as const).map((mapping) => DmaBufImporter.attach(b, importer, { mapping }) as DmaBufImporter));
        const impBuf = [0, 0, 1, 1];
        const vdev = new VfioPciCoreDevice(sys, FAR_GPU);
        const bar = platform.endpoint(FAR_GPU).bars[0];
        const vbuf = vdev.featureDmaBuf({ regionIndex: 0, openFlags: 0, flags: 0, dmaRanges: [{ offset: 0, length: 4 * PAGE_SIZE }, { offset: 8 * PAGE_SIZE, length: 4 * PAGE_SIZE }] }) as DmaBuf;
        const vimp = DmaBufImporter.attach(vbuf, importer, { mapping: "phys" }) as DmaBufImporter;
        const extra: DmaBuf[] = [];
        for (const op of ops) {
          switch (op.kind) {
            case "migrate": {
              const r = gpu.migrate(bufs[op.buf]!, op.to, op.blocks.length === 0 ? undefined : op.blocks);
              expect(r).toBeGreaterThanOrEqual(op.to === "vram" ? -12 : 0);
              break;
            }
            case "read": {
              const b = impBuf[op.imp] ?? 0;
              const got = (imps[op.imp]!).read(op.offset, 64);
              expect(firstDiff(got, (shadow[b] as Uint8Array).subarray(op.offset, op.offset + 64))).toBe(-1);
              break;
            }
            case "write": {
              const b = impBuf[op.imp] ?? 0;
              const bytes = new Uint8Array(64).fill(op.value);
              expect((imps[op.imp]!).write(op.offset, bytes)).toBe(0);
              (shadow[b] as Uint8Array).set(bytes, op.offset);
              break;
            }
            case "advance":
              sys.trace.clock.advance(op.ns);
              break;
            case "pressure":
              if (extra.length < 2) extra.push(gpu.allocate(4 * BLOCK));
              else dmaBufPut(extra.shift()!);
              break;
            case "disable":
              expect(vdev.setMemoryEnable(false).done).toBe(true);
              break;
            case "enable":
              vdev.setMemoryEnable(true);
              break;
            case "reset":
              expect(vdev.reset().done).toBe(true);
              break;
            case "vfioRead": {
              const got = vimp.read(4 * PAGE_SIZE, 16);
              if (vdev.memoryEnabled) expect(firstDiff(got, platform.memory.read(unsafePhysAddr((bar?.phys ?? 0) + 8 * PAGE_SIZE), 16))).toBe(-1);
              else expect(got).toBeLessThan(0);
              break;
            }
          }
          // After every step: a live mapping covers only memory its buffer holds now, and the bytes are all there.
          imps.forEach((imp, i) => {
            const list = imp.physList;
            if (list !== undefined) expect(within(list, gpu.currentList(bufs[impBuf[i] ?? 0]!))).toBe(true);
          });
          bufs.forEach((b, i) => {
            expect(firstDiff(gpu.cpuRead(b, 0, SIZE), shadow[i] as Uint8Array)).toBe(-1);
          });
        }
        for (const imp of [...imps, vimp]) imp.close();
        for (const b of [...bufs, ...extra, vbuf]) dmaBufPut(b);
        expect(sys.leaks()).toEqual({ buffers: 0, attachments: 0, mappings: 0 });
        expect(gpu.vramFreeBlocks).toBe(gpu.nBlocks);
        expect(platform.memory.allocator.allocatedPages).toBe(pagesBefore);
        expect(sys.debug.reports()).toEqual([]);
        // Nothing left in the DMA layer either: no mapping, no IOVA state (kept IOVAs were given back).
        const report = rig.kernel.unbind(importer);
        expect([report.leakedMappings.length, report.leakedIovaStates]).toEqual([0, 0]);
      }),
      { numRuns: 60 },
    );
  });
});
