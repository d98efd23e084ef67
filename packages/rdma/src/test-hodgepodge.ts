import { unsafeIova } from "@dmasim/iommu";
import { HMM_PFN_P2PDMA_BUS, PteKind } from "@dmasim/hmm-odp";
import type { Dmirror, MmFile } from "@dmasim/hmm-odp";
import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import {
  IB_ACCESS_LOCAL_WRITE,
  IB_ACCESS_ON_DEMAND,
  IB_ACCESS_REMOTE_ATOMIC,
  IB_ACCESS_REMOTE_READ,
  IB_ACCESS_REMOTE_WRITE,
  MLX5_IMR_MTT_SIZE,
} from "./constants.js";
import type { IbMr } from "./mr.js";
import type { Mlx5Nic, OdpDmaStrategy } from "./nic.js";
import { expect } from "vitest";
import { mmapHodgepodge } from "./hodgepodge.js";
import { IbQpState } from "./verbs.js";
import { OK, pattern, rdmaRead, rdmaRig, rdmaWrite } from "./test-fixtures.js";
import type { RdmaRig } from "./test-fixtures.js";

// The hodgepodge MR of the tests: one ODP MR over every kind of user memory the model has.

export const RW = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ | IB_ACCESS_REMOTE_ATOMIC;

export type SegmentKind = "anon" | "thp" | "file" | "bar-switch" | "bar-bridge" | "devpriv";

export interface Segment {
  readonly kind: SegmentKind;
  /** First page (index from the MR's start) and page count. */
  readonly first: number;
  readonly pages: number;
}

export interface Hodgepodge extends RdmaRig {
  /** The MR's start (2 MiB aligned) and its page count. */
  readonly base: number;
  readonly pages: number;
  readonly segments: readonly Segment[];
  /** The ODP MR on NIC B over all of it; a pinned staging buffer on NIC A (one page per MR page). */
  readonly odp: IbMr;
  readonly staging: IbMr;
  readonly stagingBase: number;
  /** The GPU's mirror of the process, which migrates the devpriv segment in and out. */
  readonly mirror: Dmirror;
  readonly kindOf: (page: number) => SegmentKind;
  /** The shared file of the file segment (its page cache outlives the process: drop it at the end). */
  readonly file: MmFile;
}

/**
 * Lays out, back to back from a 2 MiB boundary: 16 anonymous pages, a 2 MiB THP, 16 pages of a shared
 * file, 8 pages of GPU S's BAR (P2P by bus address through the switch), 8 of GPU H's BAR (through the host
 * bridge), and 16 anonymous pages that migrate to GPU device-private memory. The MR is writable; the
 * BAR and file bytes start with a pattern, so what the NIC reads is checkable from the first access.
 */
export function hodgepodge(options: { implicit?: boolean; iommuMode?: "strict" | "lazy"; odpDma?: OdpDmaStrategy } = {}): Hodgepodge {
  const rig = rdmaRig({ iommuMode: options.iommuMode ?? "strict", odpDma: options.odpDma ?? "hmm_dma_map" });
  const { mm, sys, nicA, nicB, pdA, pdB, gpu, gpuSwitch, gpuBridge, platform } = rig;
  const l = mmapHodgepodge(mm, { switchBar: gpuSwitch, bridgeBar: gpuBridge, gpu });
  const { base, pages, segments } = l;
  const file = l.file;
  if (file === undefined) throw new Error("no file segment");
  for (let p = 0; p < 16; p++) sys.fileWrite(file, p * PAGE_SIZE, pattern(1000 + p));
  for (let p = 0; p < 8; p++) {
    platform.memory.write(unsafePhysAddr(gpuSwitch.phys + p * PAGE_SIZE), pattern(2000 + p));
    platform.memory.write(unsafePhysAddr(gpuBridge.phys + p * PAGE_SIZE), pattern(3000 + p));
  }
  // The THP: one write fault maps the whole 2 MiB with a PMD.
  const thp = segments[1];
  if (thp !== undefined) mm.write(base + thp.first * PAGE_SIZE, pattern(4000));
  const dp = segments[5];
  if (dp !== undefined) {
    for (let p = 0; p < dp.pages; p++) mm.write(base + (dp.first + p) * PAGE_SIZE, pattern(5000 + p));
    if (l.migrateDevpriv() !== 0) throw new Error("migration to the GPU failed");
  }
  const mirror = l.mirror();
  if (mirror === undefined) throw new Error("no GPU mirror");
  const stagingBase = mm.mmap(pages * PAGE_SIZE);
  const staging = nicA.regMr(pdA, mm, stagingBase, pages * PAGE_SIZE, RW);
  const odp = options.implicit === true ? nicB.regMr(pdB, mm, 0, Number.MAX_SAFE_INTEGER, RW | IB_ACCESS_ON_DEMAND) : nicB.regMr(pdB, mm, base, pages * PAGE_SIZE, RW | IB_ACCESS_ON_DEMAND);
  if (typeof staging === "number") throw new Error(`staging registration failed: ${staging}`);
  if (typeof odp === "number") throw new Error(`ODP registration failed: ${odp}`);
  const kindOf = l.kindOf;
  return { ...rig, base, pages, segments, odp, staging, stagingBase, mirror, kindOf, file };
}

/**
 * The physical address an MTT entry leads the NIC to: through its IOMMU domain for an IOVA, or the BAR
 * behind a P2P bus address. Undefined when the entry leads nowhere.
 */
export function mttPhys(nic: Mlx5Nic, mr: IbMr, addr: number): number | undefined {
  let m = mr;
  if (mr.implicit) {
    const child = mr.children.get(Math.floor(addr / MLX5_IMR_MTT_SIZE));
    if (child === undefined) return undefined;
    m = child;
  }
  const i = Math.floor((addr - m.mttStart) / PAGE_SIZE);
  const e = m.mtt[i] ?? 0;
  if (e === 0) return undefined;
  const dma = e - (e % 4);
  const flags = m.odp?.map.flags[i] ?? 0;
  if ((flags & HMM_PFN_P2PDMA_BUS) !== 0) {
    for (const p of nic.kernel.platform.providers) if (dma >= p.bus && dma < p.bus + p.size) return p.phys + (dma - p.bus);
    return undefined;
  }
  return nic.dev.domain?.iovaToPhys(unsafeIova(dma));
}

/** The physical address the CPU page table maps `addr` to (present or zero page), or undefined. */
export function cpuPhys(h: Hodgepodge, addr: number): number | undefined {
  const pte = h.mm.pteAt(addr);
  if (pte === undefined) return undefined;
  if (pte.kind === PteKind.PRESENT || pte.kind === PteKind.ZERO) return pte.pfn * PAGE_SIZE;
  return undefined;
}

/** Every live MTT entry leads to the page the CPU maps at that address (the invariant the whole test rests on). */
export function expectMttMatchesCpu(h: Hodgepodge): void {
  for (let p = 0; p < h.pages; p++) {
    const addr = h.base + p * PAGE_SIZE;
    const nic = mttPhys(h.nicB, h.odp, addr);
    if (nic === undefined) continue;
    expect({ page: p, kind: h.kindOf(p), phys: nic }).toEqual({ page: p, kind: h.kindOf(p), phys: cpuPhys(h, addr) });
  }
}

/** The NIC reads page `p` of the MR (64 bytes) through an RDMA READ into the staging buffer. */
export function nicRead(h: Hodgepodge, p: number): Uint8Array | number {
  const wc = rdmaRead(h.qpA, h.staging, h.stagingBase + p * PAGE_SIZE, h.odp, h.base + p * PAGE_SIZE, 64);
  if (wc.status !== OK) {
    h.qpA.state = IbQpState.RTS;
    return wc.status;
  }
  return h.mm.read(h.stagingBase + p * PAGE_SIZE, 64);
}

/** The NIC writes pattern(tag) to page `p` (staged in the pinned buffer first). */
export function nicWrite(h: Hodgepodge, p: number, tag: number): number {
  h.mm.write(h.stagingBase + p * PAGE_SIZE, pattern(tag));
  const wc = rdmaWrite(h.qpA, h.staging, h.stagingBase + p * PAGE_SIZE, h.odp, h.base + p * PAGE_SIZE, 64);
  if (wc.status !== OK) h.qpA.state = IbQpState.RTS;
  return wc.status;
}

export function initialBytes(h: Hodgepodge, p: number): Uint8Array {
  const s = h.segments.find((x) => p >= x.first && p < x.first + x.pages);
  if (s === undefined) throw new Error("outside");
  const j = p - s.first;
  switch (s.kind) {
    case "file":
      return pattern(1000 + j);
    case "bar-switch":
      return pattern(2000 + j);
    case "bar-bridge":
      return pattern(3000 + j);
    case "devpriv":
      return pattern(5000 + j);
    case "thp":
      return j === 0 ? pattern(4000) : new Uint8Array(64);
    default:
      return new Uint8Array(64);
  }
}
