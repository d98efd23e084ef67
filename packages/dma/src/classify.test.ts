import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { GiB, KiB, PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import { Counter } from "./counters.js";
import { DmaDirection, DmaInputError, dmaClassifyRange } from "./index.js";
import type { DmaMemoryRun } from "./index.js";
import { CLIENT, DEV, FAR_CLIENT, PROVIDER, UNTRUSTED, freshPages, moved, p2pRig, rig } from "./test-fixtures.js";

const { TO_DEVICE, FROM_DEVICE } = DmaDirection;

function shape(runs: readonly DmaMemoryRun[]): [string, number, number][] {
  return runs.map((r) => [r.kind, r.phys, r.len]);
}

describe("dmaClassifyRange", () => {
  it("RAM an iommu-dma device reaches is one normal run, and nothing is mapped", () => {
    const { platform, dev } = rig();
    const phys = freshPages(platform, 8);
    const m = moved(platform, () => dmaClassifyRange(dev, unsafePhysAddr(phys + 100), 7 * PAGE_SIZE, TO_DEVICE));
    expect(shape(m.result)).toEqual([["normal", phys + 100, 7 * PAGE_SIZE]]);
    expect(m.result[0]!.provider).toBeUndefined();
    expect(m.get(Counter.PageDescLookups)).toBe(8);
    expect(m.get(Counter.PteWrites) + m.get(Counter.IovaAllocCache) + m.get(Counter.IovaAllocTree) + m.get(Counter.SwiotlbSlotsAllocated)).toBe(0);
  });

  it("dma-direct: RAM below the mask is normal, above it must bounce", () => {
    const { dev } = rig({ kernel: { iommuMode: "off" } });
    const runs = dmaClassifyRange(dev, unsafePhysAddr(4 * GiB - 3 * PAGE_SIZE), 5 * PAGE_SIZE, TO_DEVICE);
    expect(shape(runs)).toEqual([
      ["normal", 4 * GiB - 3 * PAGE_SIZE, 3 * PAGE_SIZE],
      ["bounce", 4 * GiB, 2 * PAGE_SIZE],
    ]);
  });

  it("swiotlb=force makes all RAM bounce on dma-direct", () => {
    const { platform, dev } = rig({ kernel: { iommuMode: "off", swiotlb: { force: true } } });
    const phys = freshPages(platform, 2);
    expect(shape(dmaClassifyRange(dev, unsafePhysAddr(phys), 2 * PAGE_SIZE, TO_DEVICE))).toEqual([["bounce", phys, 2 * PAGE_SIZE]]);
  });

  it("a confidential guest: private pages are 'private', pages already shared still bounce", () => {
    const { platform, dev } = rig({ kernel: { iommuMode: "off" }, confidential: true });
    const phys = freshPages(platform, 4);
    platform.memory.setMemoryDecrypted(unsafePhysAddr(phys + PAGE_SIZE), 2);
    expect(shape(dmaClassifyRange(dev, unsafePhysAddr(phys), 4 * PAGE_SIZE, TO_DEVICE))).toEqual([
      ["private", phys, PAGE_SIZE],
      ["bounce", phys + PAGE_SIZE, 2 * PAGE_SIZE],
      ["private", phys + 3 * PAGE_SIZE, PAGE_SIZE],
    ]);
  });

  it("an untrusted device bounces only the partial head and tail granules", () => {
    const { platform, kernel } = rig();
    const dev = kernel.device(UNTRUSTED);
    const phys = freshPages(platform, 4);
    expect(shape(dmaClassifyRange(dev, unsafePhysAddr(phys + 100), 3 * PAGE_SIZE, TO_DEVICE))).toEqual([
      ["bounce", phys + 100, PAGE_SIZE - 100],
      ["normal", phys + PAGE_SIZE, 2 * PAGE_SIZE],
      ["bounce", phys + 3 * PAGE_SIZE, 100],
    ]);
    expect(shape(dmaClassifyRange(dev, unsafePhysAddr(phys), 4 * PAGE_SIZE, TO_DEVICE))).toEqual([["normal", phys, 4 * PAGE_SIZE]]);
    // Without a pool the partial granules still need a bounce (and so cannot be mapped at all).
    const bare = rig({ kernel: { swiotlb: false } });
    const lone = freshPages(bare.platform, 1);
    expect(shape(dmaClassifyRange(bare.kernel.device(UNTRUSTED), unsafePhysAddr(lone + 100), 100, TO_DEVICE))).toEqual([["bounce", lone + 100, 100]]);
    // A trusted device never bounces on iommu-dma.
    expect(shape(dmaClassifyRange(kernel.device(DEV), unsafePhysAddr(phys + 100), 100, TO_DEVICE))).toEqual([["normal", phys + 100, 100]]);
  });

  it("the kmalloc rule bounces a non-coherent device's unaligned buffer the CPU reads back", () => {
    const { platform, dev } = rig({ kernel: { kmallocBounce: true, devices: { [DEV]: { coherent: false } } } });
    const phys = freshPages(platform, 1);
    expect(dmaClassifyRange(dev, unsafePhysAddr(phys), 80, FROM_DEVICE)[0]!.kind).toBe("bounce");
    expect(dmaClassifyRange(dev, unsafePhysAddr(phys), 80, TO_DEVICE)[0]!.kind).toBe("normal");
    expect(dmaClassifyRange(dev, unsafePhysAddr(phys), 100, FROM_DEVICE)[0]!.kind).toBe("normal"); // kmalloc-128 is aligned
    expect(dmaClassifyRange(dev, unsafePhysAddr(phys), 128, FROM_DEVICE)[0]!.kind).toBe("normal");
  });

  it("splits a BAR into P2P runs per provider and plain MMIO, with the kind decided for this device", () => {
    const { platform, kernel } = p2pRig({ hostBridgeP2p: "none" });
    const bar = platform.endpoint(PROVIDER).bars[0]!;
    const a = platform.addP2pdmaProvider(PROVIDER, 0, { size: 256 * KiB });
    const b = platform.addP2pdmaProvider(PROVIDER, 0, { offset: 256 * KiB, size: 256 * KiB });
    const near = dmaClassifyRange(kernel.device(CLIENT), bar.phys, 1024 * KiB, TO_DEVICE);
    expect(shape(near)).toEqual([
      ["p2p-bus-addr", bar.phys, 256 * KiB],
      ["p2p-bus-addr", bar.phys + 256 * KiB, 256 * KiB],
      ["mmio", bar.phys + 512 * KiB, 512 * KiB],
    ]);
    expect(near.map((r) => r.provider)).toEqual([a, b, undefined]);
    const far = dmaClassifyRange(kernel.device(FAR_CLIENT), unsafePhysAddr(bar.phys + 128 * KiB), 256 * KiB, TO_DEVICE);
    expect(shape(far)).toEqual([
      ["p2p-not-supported", bar.phys + 128 * KiB, 128 * KiB],
      ["p2p-not-supported", bar.phys + 256 * KiB, 128 * KiB],
    ]);
  });

  it("reports p2p-host-bridge through an allow-listed host bridge", () => {
    const { platform, kernel } = p2pRig({ hostBridgeP2p: "any" });
    const p = platform.addP2pdmaProvider(PROVIDER, 0);
    const runs = dmaClassifyRange(kernel.device(FAR_CLIENT), p.phys, 8 * PAGE_SIZE, TO_DEVICE);
    expect(shape(runs)).toEqual([["p2p-host-bridge", p.phys, 8 * PAGE_SIZE]]);
    expect(runs[0]!.provider).toBe(p);
  });

  it("refuses holes and bad arguments with DmaInputError, counting nothing", () => {
    const { platform, dev } = rig({ ramBytes: 4 * GiB });
    const before = platform.trace.counters.snapshot();
    expect(() => dmaClassifyRange(dev, unsafePhysAddr(4 * GiB - PAGE_SIZE), 2 * PAGE_SIZE, TO_DEVICE)).toThrow(/phys = 0x100000000 is invalid: expected an address inside RAM or an MMIO region/);
    expect(() => dmaClassifyRange(dev, unsafePhysAddr(-1), 10, TO_DEVICE)).toThrow(DmaInputError);
    expect(() => dmaClassifyRange(dev, unsafePhysAddr(0x10000), 10, 5 as DmaDirection)).toThrow(/dir = 0x5/);
    expect(platform.trace.counters.snapshot().diff(before).nonZero()).toEqual({});
  });

  it("property: runs tile the range exactly and are maximal (neighbours differ in kind or provider)", () => {
    const { platform, kernel } = p2pRig({ hostBridgeP2p: "none" });
    platform.addP2pdmaProvider(PROVIDER, 0, { size: 64 * KiB });
    platform.addP2pdmaProvider(PROVIDER, 0, { offset: 64 * KiB, size: 64 * KiB });
    const bar = platform.endpoint(PROVIDER).bars[0]!;
    const devs = [kernel.device(CLIENT), kernel.device(FAR_CLIENT)];
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 256 * KiB }),
        fc.integer({ min: 1, max: 256 * KiB }),
        (d, inBar, start, len) => {
          const base = inBar ? bar.phys : 4 * GiB - 128 * KiB; // BAR, or RAM across the 32-bit mask
          const phys = base + start;
          const runs = dmaClassifyRange(devs[d]!, unsafePhysAddr(phys), len, TO_DEVICE);
          let p = phys;
          for (const [i, r] of runs.entries()) {
            expect(r.phys).toBe(p);
            expect(r.len).toBeGreaterThan(0);
            const prev = runs[i - 1];
            if (prev !== undefined) expect(prev.kind !== r.kind || prev.provider !== r.provider).toBe(true);
            p += r.len;
          }
          expect(p).toBe(phys + len);
        },
      ),
      { numRuns: 60 },
    );
  });
});
