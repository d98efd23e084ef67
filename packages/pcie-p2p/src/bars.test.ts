import { GiB, KiB, MiB, physAddr } from "@dmasim/memory";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createPlatform } from "./platform.js";
import { A, B, C, switchSpec, DEV } from "./test-fixtures.js";

describe("BAR placement", () => {
  it("places BARs largest first, naturally aligned, from the bottom of the window above RAM", () => {
    const p = createPlatform(switchSpec());
    const at = (bdf: string) => p.endpoint(bdf).bars.map((b) => [b.index, b.phys, b.size]);
    expect(at(B)).toEqual([[0, GiB, 2 * MiB], [2, GiB + 3 * MiB, 64 * KiB]]);
    expect(at(A)).toEqual([[0, GiB + 2 * MiB, MiB]]);
    expect(at(C)).toEqual([[0, GiB + 3 * MiB + 64 * KiB, 64 * KiB]]);
  });

  it("keeps explicit BARs where the spec puts them and packs the others around them", () => {
    const p = createPlatform({
      memory: { ramBytes: 64 * MiB },
      endpoints: [
        { bdf: DEV, bars: [{ size: 64 * KiB, phys: GiB }] },
        { bdf: "0000:02:00.0", bars: [{ size: 64 * KiB }, { size: 128 * KiB }] },
      ],
    });
    expect(p.endpoint("0000:02:00.0").bars.map((b) => b.phys)).toEqual([GiB + 64 * KiB, GiB + 128 * KiB]);
  });

  it("bus = phys + the host bridge's bus offset", () => {
    const p = createPlatform({ ...switchSpec(), hostBridges: [{ id: "hb0", busOffset: -GiB + 256 * MiB }] });
    for (const b of p.endpoint(B).bars) expect(b.bus - b.phys).toBe(-GiB + 256 * MiB);
    expect(p.endpoint(B).hostBridge.window).toMatchObject({ phys: GiB, bus: 256 * MiB });
  });

  it("registers each BAR as a backed MMIO region owned by its device, shared by the CPU and the device", () => {
    const p = createPlatform(switchSpec());
    const bar = p.endpoint(B).bars[0]!;
    expect(p.memory.regionAt(bar.phys)).toMatchObject({ kind: "mmio", base: bar.phys, size: bar.size, owner: B, name: `${B} BAR0` });
    p.memory.write(physAddr(bar.phys + 100), Uint8Array.of(1, 2, 3));
    expect([...p.memory.read(physAddr(bar.phys + 100), 3)]).toEqual([1, 2, 3]);
  });

  it("any mix of BAR sizes lands aligned, inside the window and without overlap (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.integer({ min: 12, max: 30 }), { maxLength: 6 }), { minLength: 1, maxLength: 6 }), (shifts) => {
        const p = createPlatform({
          memory: { ramBytes: 16 * MiB },
          endpoints: shifts.map((s, i) => ({ bdf: `0000:${(i + 1).toString(16).padStart(2, "0")}:00.0`, bars: s.map((k) => ({ size: 2 ** k })) })),
        });
        const w = p.hostBridges[0]!.window;
        const all = p.endpoints.flatMap((e) => e.bars).sort((x, y) => x.phys - y.phys);
        all.forEach((b, i) => {
          expect(b.phys % b.size).toBe(0);
          expect(b.phys >= w.phys && b.phys + b.size <= w.phys + w.size).toBe(true);
          if (i > 0) expect(b.phys).toBeGreaterThanOrEqual(all[i - 1]!.phys + all[i - 1]!.size);
        });
      }),
      { numRuns: 50 },
    );
  });
});
