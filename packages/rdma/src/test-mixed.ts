import { createDmaKernel } from "@dmasim/dma";
import type { DmaKernelOptions } from "@dmasim/dma";
import { DmaBufSystem, GpuVramExporter, VfioPciCoreDevice } from "@dmasim/dmabuf";
import type { DmaBuf } from "@dmasim/dmabuf";
import { DmirrorDevice, HMM_PFN_P2PDMA_BUS, Mm, MmSystem, PteKind } from "@dmasim/hmm-odp";
import type { Dmirror, MmFile } from "@dmasim/hmm-odp";
import { unsafeIova } from "@dmasim/iommu";
import { GiB, MiB, PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import { createPlatform } from "@dmasim/pcie-p2p";
import type { P2pdmaProvider, Platform } from "@dmasim/pcie-p2p";
import { TestBdf, switchTopology } from "@dmasim/pcie-p2p/testing";
import { IB_ACCESS_LOCAL_WRITE, IB_ACCESS_REMOTE_ATOMIC, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE } from "./constants.js";
import { mmapHodgepodge } from "./hodgepodge.js";
import { ibUmemMixedOf, regMixedMr } from "./mixed-mr.js";
import type { IbUmemMixed, MixedSegmentSpec } from "./mixed-mr.js";
import type { IbMr, IbPd } from "./mr.js";
import { Mlx5Nic } from "./nic.js";
import type { OdpDmaStrategy } from "./nic.js";
import { OK, PAGE_SIZE as PS, rdmaRead, rdmaWrite } from "./test-fixtures.js";
import { IbQpState, ibConnectQp, ibCreateCq, ibCreateQp } from "./verbs.js";
import type { IbQp } from "./verbs.js";

// The mixed MR of the tests: ONE MR on NIC B over user VA (anonymous, THP, file, two BAR mmaps,
// device-private) and two dma-bufs (GPU VRAM that migrates, a VFIO BAR that can be revoked).

export const RW = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ | IB_ACCESS_REMOTE_ATOMIC;

export type MixedKind = "anon" | "thp" | "file" | "bar-switch" | "bar-bridge" | "devpriv" | "gpu-vram" | "vfio-bar";

export interface MixedRigSegment {
  readonly kind: MixedKind;
  readonly first: number;
  readonly pages: number;
  /** The user address of the first page (VA kinds) or the byte offset in the buffer (dma-buf kinds). */
  readonly at: number;
}

export interface MixedRig {
  readonly platform: Platform;
  readonly sys: MmSystem;
  readonly mm: Mm;
  readonly nicA: Mlx5Nic;
  readonly nicB: Mlx5Nic;
  readonly pdA: IbPd;
  readonly pdB: IbPd;
  readonly qpA: IbQp;
  readonly dmabufs: DmaBufSystem;
  readonly gpuVram: GpuVramExporter;
  readonly vram: DmaBuf;
  readonly vfio: VfioPciCoreDevice;
  readonly vfioBuf: DmaBuf;
  /** The VFIO BAR's physical address (the buffer's bytes). */
  readonly vfioPhys: number;
  readonly gpuSwitch: P2pdmaProvider;
  readonly gpuBridge: P2pdmaProvider;
  readonly mirror: Dmirror;
  readonly file: MmFile;
  readonly mr: IbMr;
  readonly umem: IbUmemMixed;
  readonly staging: IbMr;
  readonly stagingBase: number;
  readonly pages: number;
  /** The kinds in MR order (a VA segment of the MR spans several kinds). */
  readonly parts: readonly MixedRigSegment[];
  readonly kindOf: (page: number) => MixedKind;
  readonly part: (kind: MixedKind) => MixedRigSegment;
}

/** A 64-byte pattern unique to `tag`. */
export function tagBytes(tag: number): Uint8Array {
  const b = new Uint8Array(64);
  const v = new DataView(b.buffer);
  for (let i = 0; i < 16; i++) v.setUint32(i * 4, (tag * 2654435761 + i * 40503) >>> 0);
  return b;
}

/**
 * Builds the rig and registers the mixed MR, MR order: [anon 16 + THP 512] (VA) · [GPU buffer, 64 pages
 * in 64 KiB blocks, blocks 1 and 3 in RAM] (dma-buf) · [file 16 + BAR-switch 8 + BAR-bridge 8 + devpriv
 * 16] (VA) · [VFIO BAR, 16 pages, through the host bridge] (dma-buf). Every page starts with tagBytes(page)
 * (written through its own CPU view before registration; the devpriv pages then migrate to the GPU). The
 * GPU's copy engine runs at 0.25 byte/ns, so a move's KERNEL fence outlasts the NIC's fault path and the wait shows.
 */
export function mixedRig(options: DmaKernelOptions & { gpuPages?: number; vfioPages?: number; odpDma?: OdpDmaStrategy } = {}): MixedRig {
  const { gpuPages = 64, vfioPages = 16, odpDma, ...kernelOptions } = options;
  const platform = createPlatform(
    switchTopology({
      ramBytes: 1 * GiB,
      hostBridgeP2p: "same-host-bridge",
      switchPeer: { bars: [{ size: 4 * MiB }, { size: 64 * MiB }] },
      switchSpare: {},
      bridgePeer: { bars: [{ size: 4 * MiB }, { size: 4 * MiB }] },
    }),
  );
  const kernel = createDmaKernel(platform, { swiotlb: false, iommuMode: "strict", ...kernelOptions });
  const sys = new MmSystem(kernel);
  const mm = new Mm(sys);
  const nicA = new Mlx5Nic(kernel, TestBdf.CLIENT);
  const nicB = new Mlx5Nic(kernel, TestBdf.SWITCH_SPARE, odpDma === undefined ? {} : { odpDma });
  const pdA = nicA.allocPd();
  const pdB = nicB.allocPd();
  const cqA = ibCreateCq(nicA, 4096);
  const cqB = ibCreateCq(nicB, 4096);
  const qpA = ibCreateQp(pdA, { sendCq: cqA, recvCq: cqA });
  const qpB = ibCreateQp(pdB, { sendCq: cqB, recvCq: cqB });
  ibConnectQp(qpA, qpB);
  const gpuSwitch = platform.addP2pdmaProvider(TestBdf.SWITCH_PEER, 0);
  const gpuBridge = platform.addP2pdmaProvider(TestBdf.BRIDGE_PEER, 0);
  const gpu = new DmirrorDevice(sys, { name: "gpu0", devmemPhys: 64 * GiB, devmemSize: 16 * MiB, ownerId: 0x20000 });
  const dmabufs = new DmaBufSystem(kernel, { debug: "throw" });
  const gpuVram = new GpuVramExporter(dmabufs, { bdf: TestBdf.SWITCH_PEER, bar: 1, blockBytes: 64 * 1024, copyBytesPerNs: 0.25 });
  const vram = gpuVram.allocate(gpuPages * PAGE_SIZE);
  const vfio = new VfioPciCoreDevice(dmabufs, TestBdf.BRIDGE_PEER);
  const vfioBuf = vfio.featureDmaBuf({ regionIndex: 1, openFlags: 0, flags: 0, dmaRanges: [{ offset: 0, length: vfioPages * PAGE_SIZE }] });
  if (typeof vfioBuf === "number") throw new Error(`VFIO export failed: ${vfioBuf}`);
  const vfioBar = platform.endpoint(TestBdf.BRIDGE_PEER).bars.find((b) => b.index === 1);
  if (vfioBar === undefined) throw new Error("no VFIO BAR");
  const vfioPhys = vfioBar.phys;

  const l = mmapHodgepodge(mm, { switchBar: gpuSwitch, bridgeBar: gpuBridge, gpu });
  const file = l.file;
  if (file === undefined) throw new Error("no file segment");
  const seg = (k: string): { first: number; pages: number } => {
    const s = l.segments.find((x) => x.kind === k);
    if (s === undefined) throw new Error(k);
    return s;
  };
  const gpuBlocks = Math.ceil(gpuPages / 16);
  const va1 = seg("anon").pages + seg("thp").pages;
  const va2First = seg("file").first;
  const va2 = l.pages - va2First;
  const parts: MixedRigSegment[] = [];
  let first = 0;
  for (const s of l.segments) {
    if (s.first >= va2First) break;
    parts.push({ kind: s.kind, first: first + s.first, pages: s.pages, at: l.base + s.first * PAGE_SIZE });
  }
  first += va1;
  parts.push({ kind: "gpu-vram", first, pages: gpuPages, at: 0 });
  first += gpuPages;
  for (const s of l.segments) if (s.first >= va2First) parts.push({ kind: s.kind, first: first + s.first - va2First, pages: s.pages, at: l.base + s.first * PAGE_SIZE });
  first += va2;
  parts.push({ kind: "vfio-bar", first, pages: vfioPages, at: 0 });
  first += vfioPages;
  const pages = first;

  // Every page starts with its tag, written through its own CPU view.
  for (const p of parts) {
    for (let j = 0; j < p.pages; j++) {
      const bytes = tagBytes(p.first + j);
      if (p.kind === "gpu-vram") gpuVram.cpuWrite(vram, p.at + j * PAGE_SIZE, bytes);
      else if (p.kind === "vfio-bar") platform.memory.write(unsafePhysAddr(vfioPhys + j * PAGE_SIZE), bytes);
      else if (p.kind !== "thp" || j === 0) mm.write(p.at + j * PAGE_SIZE, bytes);
    }
  }
  const thp = parts.find((p) => p.kind === "thp");
  if (thp !== undefined) for (let j = 1; j < thp.pages; j++) mm.write(thp.at + j * PAGE_SIZE, tagBytes(thp.first + j));
  if (l.migrateDevpriv() !== 0) throw new Error("migration to the GPU failed");
  const mirror = l.mirror();
  if (mirror === undefined) throw new Error("no GPU mirror");
  if (gpuBlocks >= 4 && gpuVram.migrate(vram, "ram", [1, 3]) !== 2) throw new Error("GPU block migration failed");

  const specs: MixedSegmentSpec[] = [
    { kind: "va", mm, addr: l.base, length: va1 * PAGE_SIZE, name: "mm" },
    { kind: "dmabuf", buf: vram, offset: 0, length: gpuPages * PAGE_SIZE, name: "gpu" },
    { kind: "va", mm, addr: l.base + va2First * PAGE_SIZE, length: va2 * PAGE_SIZE, name: "mm" },
    { kind: "dmabuf", buf: vfioBuf, offset: 0, length: vfioPages * PAGE_SIZE, name: "vfio" },
  ];
  const mr = regMixedMr(nicB, pdB, specs, RW);
  if (typeof mr === "number") throw new Error(`mixed registration failed: ${mr}`);
  const umem = ibUmemMixedOf(mr);
  if (umem === undefined) throw new Error("no mixed umem");
  const stagingBase = mm.mmap(pages * PAGE_SIZE);
  const staging = nicA.regMr(pdA, mm, stagingBase, pages * PAGE_SIZE, RW);
  if (typeof staging === "number") throw new Error(`staging registration failed: ${staging}`);
  const kindOf = (page: number): MixedKind => {
    for (const p of parts) if (page >= p.first && page < p.first + p.pages) return p.kind;
    throw new Error(`page ${page} outside the MR`);
  };
  const part = (kind: MixedKind): MixedRigSegment => {
    const p = parts.find((x) => x.kind === kind);
    if (p === undefined) throw new Error(kind);
    return p;
  };
  return { platform, sys, mm, nicA, nicB, pdA, pdB, qpA, dmabufs, gpuVram, vram, vfio, vfioBuf, vfioPhys, gpuSwitch, gpuBridge, mirror, file, mr, umem, staging, stagingBase, pages, parts, kindOf, part };
}

/** The NIC reads `len` bytes at MR page `p` (+ `off`) through an RDMA READ: the bytes, or the WC status. */
export function mixedRead(r: MixedRig, p: number, len = 64, off = 0): Uint8Array | number {
  const wc = rdmaRead(r.qpA, r.staging, r.stagingBase + p * PS + off, r.mr, r.mr.addr + p * PS + off, len);
  if (wc.status !== OK) {
    r.qpA.state = IbQpState.RTS;
    return wc.status;
  }
  return r.mm.read(r.stagingBase + p * PS + off, len);
}

/** The NIC writes `bytes` at MR page `p` (+ `off`), staged in the pinned buffer: the WC status. */
export function mixedWrite(r: MixedRig, p: number, bytes: Uint8Array, off = 0): number {
  r.mm.write(r.stagingBase + p * PS + off, bytes);
  const wc = rdmaWrite(r.qpA, r.staging, r.stagingBase + p * PS + off, r.mr, r.mr.addr + p * PS + off, bytes.length);
  if (wc.status !== OK) r.qpA.state = IbQpState.RTS;
  return wc.status;
}

/** The physical address MTT entry `i` of the mixed MR leads the NIC to (through its IOMMU, or a BAR by bus address). */
export function mixedMttPhys(r: MixedRig, i: number): number | undefined {
  const e = r.mr.mtt[i] ?? 0;
  if (e === 0) return undefined;
  const dma = e - (e % 4);
  if (((r.umem.map.flags[i] ?? 0) & HMM_PFN_P2PDMA_BUS) !== 0) {
    for (const p of r.platform.providers) if (dma >= p.bus && dma < p.bus + p.size) return p.phys + (dma - p.bus);
    return undefined;
  }
  return r.nicB.dev.domain?.iovaToPhys(unsafeIova(dma));
}

/** The physical page backing MR page `p` now, as its source sees it (undefined: nothing may be reached). */
export function mixedBackingPhys(r: MixedRig, p: number): number | undefined {
  const k = r.kindOf(p);
  const part = r.part(k);
  const j = p - part.first;
  if (k === "gpu-vram") {
    const list = r.gpuVram.currentList(r.vram);
    let pos = 0;
    for (let i = 0; i < list.nrRanges; i++) {
      const len = list.len[i] ?? 0;
      if (j * PAGE_SIZE < pos + len) return (list.phys[i] ?? 0) + (j * PAGE_SIZE - pos);
      pos += len;
    }
    return undefined;
  }
  if (k === "vfio-bar") return r.vfio.memoryEnabled ? r.vfioPhys + j * PAGE_SIZE : undefined;
  const pte = r.mm.pteAt(part.at + j * PAGE_SIZE);
  if (pte === undefined) return undefined;
  if (pte.kind === PteKind.PRESENT || pte.kind === PteKind.ZERO) return pte.pfn * PAGE_SIZE;
  return undefined;
}

/** Pages whose live MTT entry leads somewhere other than the memory backing the MR there now. */
export function mixedStaleEntries(r: MixedRig): { page: number; kind: MixedKind; nic: number; backing: number | undefined }[] {
  const bad: { page: number; kind: MixedKind; nic: number; backing: number | undefined }[] = [];
  for (let p = 0; p < r.pages; p++) {
    const nic = mixedMttPhys(r, p);
    if (nic === undefined) continue;
    const backing = mixedBackingPhys(r, p);
    if (nic !== backing) bad.push({ page: p, kind: r.kindOf(p), nic, backing });
  }
  return bad;
}
