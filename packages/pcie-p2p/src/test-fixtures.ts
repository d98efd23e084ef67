import { GiB, KiB, MiB } from "@dmasim/memory";
import { IommuProt } from "@dmasim/iommu";
import { createPlatform } from "./platform.js";
import type { PlatformSpec } from "./spec.js";
import { TestBdf, switchTopology } from "./testing.js";
import type { Platform } from "./types.js";

export const DEV: string = TestBdf.DEV; // the lone device of a platform without the switch
export const A: string = TestBdf.CLIENT; // under sw0.dp0
export const B: string = TestBdf.SWITCH_PEER; // under sw0.dp1, the usual provider
export const C: string = TestBdf.BRIDGE_PEER; // alone on root port rp1
export const RW = IommuProt.READ | IommuProt.WRITE;

/**
 * The shared test topology (testing.ts) with these BARs:
 * hb0 ─ rp0 ─ sw0 ─ dp0 ─ A (BAR0 1 MiB)
 *     │           └ dp1 ─ B (BAR0 2 MiB, BAR2 64 KiB)
 *     │           └ dp2   (empty)
 *     └ rp1 ─ C (BAR0 64 KiB)
 */
export function switchSpec(overrides: Partial<PlatformSpec> = {}): PlatformSpec {
  return {
    ...switchTopology({
      ramBytes: 1 * GiB,
      client: { bars: [{ size: 1 * MiB }] },
      switchPeer: { bars: [{ size: 2 * MiB }, { index: 2, size: 64 * KiB }] },
      bridgePeer: { bars: [{ size: 64 * KiB }] },
    }),
    ...overrides,
  };
}

/** A platform and, for each endpoint behind an IOMMU, a paging domain attached. */
export function withDomains(spec: PlatformSpec): Platform {
  const p = createPlatform(spec);
  for (const e of p.endpoints) {
    if (e.iommu !== undefined) e.iommu.attachDevice(e.bdf, e.iommu.allocDomain("paging"));
  }
  return p;
}

export function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed * 7 + 1) & 0xff;
  return out;
}

/** Byte equality without vitest's element-by-element deep diff, which is slow on large arrays. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}
