import { createDmaKernel, unsafeDmaAddr } from "@dmasim/dma";
import type { DmaDevice, DmaKernel, DmaKernelOptions, DmaDeviceOptions } from "@dmasim/dma";
import { GiB, MiB, PAGE_SIZE, patternBytes, physAddr, unsafePhysAddr } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import type { Endpoint, P2pdmaProvider, Platform } from "@dmasim/pcie-p2p";
import { TestBdf, switchTopology } from "@dmasim/pcie-p2p/testing";
import { sgAllocTable, sgSetPhys, sgtableDmaSegments } from "./index.js";
import type { SgTable } from "./index.js";

// Test rig (not exported from index.ts): the shared test topology (@dmasim/pcie-p2p/testing) with one
// host bridge that forwards P2P between its root ports,
//   hb0 ─ rp0 ─ sw0 ─ dp0 ─ CLIENT      (trusted)
//     │            ├ dp1 ─ PROVIDER    (BAR0 2 MiB: P2P memory reached through the switch → BUS_ADDR)
//     │            └ dp2 ─ UNTRUSTED   (external-facing)
//     └ rp1 ─ FAR                     (BAR0 2 MiB: P2P memory reached through hb0 → THRU_HOST_BRIDGE)

export const CLIENT = TestBdf.CLIENT;
export const PROVIDER = TestBdf.SWITCH_PEER;
export const UNTRUSTED = TestBdf.SWITCH_SPARE;
export const FAR = TestBdf.BRIDGE_PEER;

export interface Rig {
  readonly platform: Platform;
  readonly kernel: DmaKernel;
  readonly dev: DmaDevice;
  readonly ep: Endpoint;
  /** P2P memory behind the switch (BUS_ADDR for CLIENT). */
  readonly switchP2p: P2pdmaProvider;
  /** P2P memory behind the host bridge (THRU_HOST_BRIDGE for CLIENT). */
  readonly bridgeP2p: P2pdmaProvider;
}

export interface RigOptions {
  readonly kernel?: DmaKernelOptions;
  readonly device?: DmaDeviceOptions;
  readonly untrusted?: boolean;
  readonly confidential?: boolean;
  /** Host bridge P2P allow-list entry; "none" makes FAR's memory NOT_SUPPORTED for CLIENT. */
  readonly hostBridgeP2p?: "none" | "same-host-bridge";
  readonly iommu?: boolean;
}

export function makeRig(options: RigOptions = {}): Rig {
  const platform = createPlatform(
    switchTopology({
      ramBytes: 4 * GiB,
      confidential: options.confidential ?? false,
      iommu: options.iommu ?? true,
      hostBridgeP2p: options.hostBridgeP2p ?? "same-host-bridge",
      switchPeer: { bars: [{ size: 2 * MiB }] },
      switchSpare: { untrusted: true },
      bridgePeer: { bars: [{ size: 2 * MiB }] },
    }),
  );
  const switchP2p = platform.addP2pdmaProvider(PROVIDER, 0);
  const bridgeP2p = platform.addP2pdmaProvider(FAR, 0);
  const kernel = createDmaKernel(platform, { swiotlb: { bytes: 4 * MiB }, ...options.kernel });
  const bdf = options.untrusted === true ? UNTRUSTED : CLIENT;
  const dev = kernel.device(bdf, options.device);
  return { platform, kernel, dev, ep: platform.endpoint(bdf), switchP2p, bridgeP2p };
}

/** Deterministic bytes (see patternBytes in @dmasim/memory). */
export const pattern = patternBytes;

/** `count` pages from the page allocator, spaced so neighbours are never physically contiguous. */
export function scatteredPages(platform: Platform, count: number): number[] {
  const pfns: number[] = [];
  for (let i = 0; i < count; i++) {
    const phys = platform.memory.allocator.allocPages(2);
    pfns.push(Math.floor(phys / PAGE_SIZE));
  }
  return pfns;
}

/** Index of the first differing byte, or -1 (lengths included); fast on large buffers. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/** The device's read of [addr, addr+len), or the kind of access error it got. */
export function deviceRead(ep: Endpoint, addr: number, len: number): Uint8Array | string {
  try {
    return ep.dmaRead(unsafeDmaAddr(addr), len);
  } catch (e) {
    if (e instanceof Error && "kind" in e) return String((e as { kind: unknown }).kind);
    throw e;
  }
}

/** One entry of a test list: `len` bytes at `offset` into freshly allocated pages, or at `phys`. */
export interface EntryDesc {
  readonly len: number;
  readonly offset?: number;
  readonly phys?: number;
}

/**
 * A table of `entries`, each in its own allocation (with a spare page after it, so no two entries are
 * physically adjacent unless `phys` says so), filled with a pattern seeded by its index.
 */
export function listOf(rig: Rig, entries: readonly EntryDesc[]): SgTable {
  const { platform } = rig;
  const table = sgAllocTable(platform.trace, entries.length);
  entries.forEach((e, i) => {
    const offset = e.offset ?? 0;
    const phys = e.phys ?? platform.memory.allocator.allocPages(Math.ceil((offset + e.len) / PAGE_SIZE) + 1) + offset;
    platform.memory.write(physAddr(phys), pattern(e.len, i + 1));
    sgSetPhys(table, i, unsafePhysAddr(phys), e.len);
  });
  return table;
}

/** The bytes each DMA segment must show the device: the entries' data in order, cut at segment lengths. */
export function expectedSegments(rig: Rig, table: SgTable): Uint8Array[] {
  const parts: Uint8Array[] = [];
  let total = 0;
  for (let i = 0; i < table.origNents; i++) {
    const b = rig.platform.memory.read(physAddr(table.phys[i] ?? 0), table.length[i] ?? 0);
    parts.push(b);
    total += b.length;
  }
  const all = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  const out: Uint8Array[] = [];
  at = 0;
  for (const [, len] of sgtableDmaSegments(table)) {
    out.push(all.subarray(at, at + len));
    at += len;
  }
  return out;
}

/** Asserts-friendly: -1 when the device reads exactly the expected bytes from every segment. */
export function firstBadSegment(rig: Rig, table: SgTable): number {
  const expected = expectedSegments(rig, table);
  const segs = sgtableDmaSegments(table);
  for (let k = 0; k < segs.length; k++) {
    const [addr, len] = segs[k] ?? [0, 0];
    const got = deviceRead(rig.ep, addr, len);
    if (typeof got === "string" || firstDifference(got, expected[k] ?? new Uint8Array()) !== -1) return k;
  }
  return -1;
}
