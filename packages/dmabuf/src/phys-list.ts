import { DMA_ATTR_MMIO, DMA_IOVA_STATE_BYTES, DMA_MAPPING_ERROR, DmaDevice, DmaDirection, DmaIovaState, dmaIovaDestroy, dmaIovaFree, dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc, dmaIovaUnlink, dmaMapPhys, dmaUnmapPhys, unsafeDmaAddr } from "@dmasim/dma";
import { unsafePhysAddr } from "@dmasim/memory";
import type { PhysAddr } from "@dmasim/memory";
import type { DmaMemoryKind } from "@dmasim/dma";
import { PciP2pdmaMapType } from "@dmasim/pcie-p2p";
import type { P2pdmaProvider } from "@dmasim/pcie-p2p";
import { DmaBufErrno } from "./constants.js";
import { DmaBufCounter } from "./counters.js";
import { DmaBufInputError, DmaBufStateError } from "./errors.js";
import { kAddSize, kCreate, kDmaMappings, kKeep, kMarkUnmapped, kTakeState } from "./internal.js";

/**
 * dmasim's mapping type without a scatterlist, in the compact form the seed discussion proposed: a list
 * of physical ranges (struct dma_buf_phys_vec: paddr + len, 16 bytes each), one bit per range saying
 * "P2P memory of the buffer's provider" (the kernel encoding would fold it into the low bit of a
 * page-aligned length, so it costs no byte), and one `p2pdma_provider` for the whole buffer. Unlike the
 * 2026 upstream PAL type (iommufd only, MMIO only), any importer takes it and a buffer may mix RAM and
 * P2P ranges. dmasim keeps the bit in a bitmap to keep the lengths readable.
 */
export class DmaBufPhysList {
  /** Ranges in the list. */
  readonly nrRanges: number;
  /** Physical address of each range. */
  readonly phys: Float64Array;
  /** Bytes in each range. */
  readonly len: Float64Array;
  /** One bit per range: set when the range is P2P memory of `provider`. */
  readonly p2pBits: Uint32Array;
  /** The P2P provider of the buffer's P2P ranges; undefined when it has none. */
  readonly provider: P2pdmaProvider | undefined;
  #size = 0;
  /** Importer DMA mappings of this list not yet unmapped. */
  [kDmaMappings] = 0;

  /** Made by dmaBufPhysListAlloc. */
  static [kCreate](nrRanges: number, provider: P2pdmaProvider | undefined): DmaBufPhysList {
    return new DmaBufPhysList(nrRanges, provider);
  }

  private constructor(nrRanges: number, provider: P2pdmaProvider | undefined) {
    this.nrRanges = nrRanges;
    this.phys = new Float64Array(nrRanges);
    this.len = new Float64Array(nrRanges);
    this.p2pBits = new Uint32Array(Math.ceil(nrRanges / 32));
    this.provider = provider;
  }

  /** Total bytes of the ranges set so far. */
  get size(): number {
    return this.#size;
  }

  /** Whether range `i` is P2P memory of `provider` (not RAM). */
  isP2p(i: number): boolean {
    return ((this.p2pBits[i >>> 5] ?? 0) & (1 << (i & 31))) !== 0;
  }

  /**
   * Bytes of metadata the kernel encoding would cost: a header (total length and the provider
   * pointer) and 16 bytes per range (the P2P bit inside the length).
   */
  get metadataBytes(): number {
    return physListBytes(this.nrRanges);
  }

  /** dma_buf_phys_list_set changed a range's length by `n`. */
  [kAddSize](n: number): void {
    this.#size += n;
  }
}

/** Metadata bytes of a list of `n` ranges (header of 16 bytes + 16 per range). */
export function physListBytes(n: number): number {
  return 16 + 16 * n;
}

/** Allocates a list of `nrRanges` empty ranges whose P2P ranges all belong to `provider`. */
export function dmaBufPhysListAlloc(nrRanges: number, provider: P2pdmaProvider | undefined): DmaBufPhysList {
  const fn = "dma_buf_phys_list_alloc";
  if (!Number.isSafeInteger(nrRanges) || nrRanges <= 0) throw new DmaBufInputError(fn, "nrRanges", nrRanges, "a count > 0");
  if (provider !== undefined && ((provider as unknown) === null || typeof (provider as unknown) !== "object" || typeof (provider as { busOffset?: unknown }).busOffset !== "number")) {
    throw new DmaBufInputError(fn, "provider", provider, "a P2pdmaProvider or undefined");
  }
  return DmaBufPhysList[kCreate](nrRanges, provider);
}

/**
 * Sets range `i`: [phys, phys+len), P2P memory of the list's provider when `p2p`. A P2P range must lie
 * inside the provider; a list without a provider has no P2P range.
 */
export function dmaBufPhysListSet(list: DmaBufPhysList, i: number, phys: PhysAddr, len: number, p2p: boolean): void {
  const fn = "dma_buf_phys_list_set";
  if (!(list instanceof DmaBufPhysList)) throw new DmaBufInputError(fn, "list", list, "a DmaBufPhysList");
  if (!Number.isSafeInteger(i) || i < 0 || i >= list.nrRanges) throw new DmaBufInputError(fn, "i", i, `a range index 0..${list.nrRanges - 1}`);
  if (!Number.isSafeInteger(phys) || phys < 0) throw new DmaBufInputError(fn, "phys", phys, "a physical address");
  if (!Number.isSafeInteger(len) || len <= 0 || !Number.isSafeInteger(phys + len)) throw new DmaBufInputError(fn, "len", len, "a length > 0 with phys + len a safe integer");
  if (p2p) {
    const pr = list.provider;
    if (pr === undefined) throw new DmaBufInputError(fn, "p2p", p2p, "false: the list has no P2P provider");
    if (phys < pr.phys || phys + len > pr.phys + pr.size) throw new DmaBufInputError(fn, "phys", phys, `a range inside the provider [${pr.phys}, ${pr.phys + pr.size})`);
  }
  list[kAddSize](len - (list.len[i] ?? 0));
  list.phys[i] = phys;
  list.len[i] = len;
  const w = i >>> 5;
  const bit = 1 << (i & 31);
  list.p2pBits[w] = p2p ? (list.p2pBits[w] ?? 0) | bit : (list.p2pBits[w] ?? 0) & ~bit;
}

/** How an importer reached each range. */
export const PhysListDmaMode = { IOVA: 0, BUS_ADDR: 1, DIRECT: 2 } as const;
export type PhysListDmaMode = (typeof PhysListDmaMode)[keyof typeof PhysListDmaMode];

/**
 * An importer's own DMA mapping of a physical-range list: one IOVA for every range that needs one
 * (RAM behind the device's IOMMU, P2P through the host bridge), bus addresses for P2P through a switch,
 * dma_map_phys per range for a device without an IOMMU.
 */
export class DmaBufPhysListDma {
  /** The importer's device the list is mapped for. */
  readonly dev: DmaDevice;
  /** The list mapped. */
  readonly list: DmaBufPhysList;
  /** The DMA direction of the mapping. */
  readonly dir: DmaDirection;
  /** The dma_iova_state of the IOVA range; undefined when no range needed an IOVA. */
  readonly state: DmaIovaState | undefined;
  /** Bytes linked into `state`. */
  readonly iovaLen: number;
  /** The DMA address of each range's first byte. */
  readonly dmaAddr: Float64Array;
  /** How each range is mapped (a PhysListDmaMode). */
  readonly mode: Uint8Array;
  /** The memory kind of each range, in dmaClassifyRange's vocabulary. */
  readonly kinds: readonly DmaMemoryKind[];
  #unmapped = false;
  #kept: DmaIovaState | undefined;

  /** Made by dmaBufPhysListDmaMap. */
  static [kCreate](dev: DmaDevice, list: DmaBufPhysList, dir: DmaDirection, state: DmaIovaState | undefined, iovaLen: number, dmaAddr: Float64Array, mode: Uint8Array, kinds: DmaMemoryKind[]): DmaBufPhysListDma {
    return new DmaBufPhysListDma(dev, list, dir, state, iovaLen, dmaAddr, mode, kinds);
  }

  private constructor(dev: DmaDevice, list: DmaBufPhysList, dir: DmaDirection, state: DmaIovaState | undefined, iovaLen: number, dmaAddr: Float64Array, mode: Uint8Array, kinds: DmaMemoryKind[]) {
    this.dev = dev;
    this.list = list;
    this.dir = dir;
    this.state = state;
    this.iovaLen = iovaLen;
    this.dmaAddr = dmaAddr;
    this.mode = mode;
    this.kinds = kinds;
  }

  /** True once the mapping was unmapped; its addresses are stale. */
  get unmapped(): boolean {
    return this.#unmapped;
  }

  /** An IOVA kept by dmaBufPhysListDmaUnlink for the next map (nothing linked in it). */
  get keptIova(): boolean {
    return this.#kept !== undefined;
  }

  /** Hands the kept IOVA over (once). */
  [kTakeState](): DmaIovaState | undefined {
    const s = this.#kept;
    this.#kept = undefined;
    return s;
  }

  /** dmaBufPhysListDmaUnlink keeps `state` for the next map. */
  [kKeep](state: DmaIovaState): void {
    this.#kept = state;
  }

  /**
   * Bookkeeping bytes the importer needs: a dma_iova_state, and a dma_addr_t for each range outside the
   * IOVA (mapped by dma_map_phys). A range in the IOVA sits at the state's address plus the running
   * length, and a bus address is phys + the provider's bus_offset: both follow from the list, so
   * dmasim's per-range `dmaAddr` cache is not counted.
   */
  get bookkeepingBytes(): number {
    let direct = 0;
    for (const m of this.mode) if (m === PhysListDmaMode.DIRECT) direct++;
    return (this.state === undefined ? 0 : DMA_IOVA_STATE_BYTES) + 8 * direct;
  }

  /** The mapping was undone. */
  [kMarkUnmapped](): void {
    this.#unmapped = true;
  }
}

/**
 * The memory kind of each range from the list's bit and its one provider: one pci_p2pdma_map_type
 * decision per buffer, no page-descriptor lookup per page (the point of the compact form).
 */
function kindsOf(dev: DmaDevice, list: DmaBufPhysList): DmaMemoryKind[] | number {
  let p2pKind: DmaMemoryKind | undefined;
  const kinds: DmaMemoryKind[] = new Array<DmaMemoryKind>(list.nrRanges);
  for (let i = 0; i < list.nrRanges; i++) {
    if (!list.isP2p(i)) {
      kinds[i] = "normal";
      continue;
    }
    if (p2pKind === undefined) {
      const provider = list.provider;
      const type = provider === undefined ? PciP2pdmaMapType.NOT_SUPPORTED : dev.kernel.platform.pciP2pdmaMapType(provider, dev.bdf);
      p2pKind = type === PciP2pdmaMapType.BUS_ADDR ? "p2p-bus-addr" : type === PciP2pdmaMapType.THRU_HOST_BRIDGE ? "p2p-host-bridge" : "p2p-not-supported";
    }
    if (p2pKind === "p2p-not-supported") return -DmaBufErrno.EINVAL;
    kinds[i] = p2pKind;
  }
  return kinds;
}

/**
 * The importer maps a physical-range list with the two-step API itself: one dma_iova_try_alloc for all
 * ranges that need an IOVA, a dma_iova_link per range at its running offset (DMA_ATTR_MMIO for P2P
 * through the host bridge), one dma_iova_sync; bus addresses for P2P through a switch; dma_map_phys per
 * range without an IOMMU. Returns -EINVAL when the device cannot reach the provider, -ENOMEM when the
 * IOVA space is exhausted, or the link's errno; a failure unwinds everything.
 */
export function dmaBufPhysListDmaMap(dev: DmaDevice, list: DmaBufPhysList, dir: DmaDirection, reuse?: DmaBufPhysListDma): DmaBufPhysListDma | number {
  const fn = "dma_buf_phys_list_dma_map";
  if (!(dev instanceof DmaDevice)) throw new DmaBufInputError(fn, "dev", dev, "a DmaDevice");
  if (!(list instanceof DmaBufPhysList)) throw new DmaBufInputError(fn, "list", list, "a DmaBufPhysList");
  if (dir !== DmaDirection.BIDIRECTIONAL && dir !== DmaDirection.TO_DEVICE && dir !== DmaDirection.FROM_DEVICE) {
    throw new DmaBufInputError(fn, "dir", dir, "DmaDirection.BIDIRECTIONAL, TO_DEVICE or FROM_DEVICE");
  }
  if (reuse !== undefined && !(reuse instanceof DmaBufPhysListDma && reuse.unmapped && reuse.dev === dev)) {
    throw new DmaBufInputError(fn, "reuse", reuse, `a mapping of ${dev.bdf} unlinked by dmaBufPhysListDmaUnlink`);
  }
  const n = list.nrRanges;
  for (let i = 0; i < n; i++) if ((list.len[i] ?? 0) === 0) throw new DmaBufInputError(fn, "list", `range ${i}`, "a list whose every range was set");
  const kinds = kindsOf(dev, list);
  if (typeof kinds === "number") return kinds;
  const dmaAddr = new Float64Array(n);
  const mode = new Uint8Array(n);
  const iommu = dev.ops === "iommu";
  let iovaLen = 0;
  let first = -1;
  for (let i = 0; i < n; i++) {
    const k = kinds[i];
    if (k === "p2p-bus-addr") {
      mode[i] = PhysListDmaMode.BUS_ADDR;
      dmaAddr[i] = (list.phys[i] ?? 0) + (list.provider?.busOffset ?? 0);
    } else if (iommu) {
      mode[i] = PhysListDmaMode.IOVA;
      if (first < 0) first = i;
      iovaLen += list.len[i] ?? 0;
    } else {
      mode[i] = PhysListDmaMode.DIRECT;
    }
  }
  let state: DmaIovaState | undefined;
  // The two-step API lets an importer keep its IOVA across a move: relink into it when it is big enough.
  const kept = reuse?.[kTakeState]();
  if (kept !== undefined && (iovaLen === 0 || kept.size < iovaLen)) dmaIovaFree(dev, kept);
  if (iovaLen > 0) {
    if (kept !== undefined && kept.size >= iovaLen) {
      state = kept;
    } else {
      state = new DmaIovaState();
      if (!dmaIovaTryAlloc(dev, state, (list.phys[first] ?? 0) as PhysAddr, iovaLen)) return -DmaBufErrno.ENOMEM;
    }
    let off = 0;
    for (let i = 0; i < n; i++) {
      if (mode[i] !== PhysListDmaMode.IOVA) continue;
      const len = list.len[i] ?? 0;
      const err = dmaIovaLink(dev, state, unsafePhysAddr(list.phys[i] ?? 0), off, len, dir, kinds[i] === "p2p-host-bridge" ? DMA_ATTR_MMIO : 0);
      if (err !== 0) {
        unlinkIova(dev, state, list, mode, kinds, off, dir);
        return err;
      }
      dmaAddr[i] = state.addr + off;
      off += len;
    }
    dmaIovaSync(dev, state, 0, iovaLen);
  }
  for (let i = 0; i < n; i++) {
    if (mode[i] !== PhysListDmaMode.DIRECT) continue;
    const a = dmaMapPhys(dev, unsafePhysAddr(list.phys[i] ?? 0), list.len[i] ?? 0, dir, kinds[i] === "p2p-host-bridge" ? DMA_ATTR_MMIO : 0);
    if (a === DMA_MAPPING_ERROR) {
      for (let j = 0; j < i; j++) if (mode[j] === PhysListDmaMode.DIRECT) dmaUnmapPhys(dev, unsafeDmaAddr(dmaAddr[j] ?? 0), list.len[j] ?? 0, dir, kinds[j] === "p2p-host-bridge" ? DMA_ATTR_MMIO : 0);
      if (state !== undefined) unlinkIova(dev, state, list, mode, kinds, iovaLen, dir);
      return -DmaBufErrno.ENOMEM;
    }
    dmaAddr[i] = a;
  }
  list[kDmaMappings]++;
  dev.kernel.trace.counters.add(DmaBufCounter.DmaBufPhysListBytes, list.metadataBytes);
  return DmaBufPhysListDma[kCreate](dev, list, dir, state, iovaLen, dmaAddr, mode, kinds);
}

/**
 * Undoes the IOVA links of [0, mappedLen): one dma_iova_destroy (one IOTLB invalidation) when every
 * linked range has the same attributes or the device is coherent, otherwise an unlink per range (the
 * cache maintenance differs) and dma_iova_free.
 */
function unlinkIova(dev: DmaDevice, state: DmaIovaState, list: DmaBufPhysList, mode: Uint8Array, kinds: readonly DmaMemoryKind[], mappedLen: number, dir: DmaDirection): void {
  let mixed = false;
  let attrs = -1;
  for (let i = 0, off = 0; i < list.nrRanges && off < mappedLen; i++) {
    if (mode[i] !== PhysListDmaMode.IOVA) continue;
    const a = kinds[i] === "p2p-host-bridge" ? DMA_ATTR_MMIO : 0;
    if (attrs >= 0 && a !== attrs) mixed = true;
    attrs = a;
    off += list.len[i] ?? 0;
  }
  // A coherent device needs no cache maintenance: MMIO and RAM ranges are destroyed alike, at once.
  if (!mixed || dev.coherent) {
    dmaIovaDestroy(dev, state, mappedLen, dir, mixed ? 0 : Math.max(attrs, 0));
    return;
  }
  for (let i = 0, off = 0; i < list.nrRanges && off < mappedLen; i++) {
    if (mode[i] !== PhysListDmaMode.IOVA) continue;
    const len = list.len[i] ?? 0;
    dmaIovaUnlink(dev, state, off, len, dir, kinds[i] === "p2p-host-bridge" ? DMA_ATTR_MMIO : 0);
    off += len;
  }
  dmaIovaFree(dev, state);
}

/** Undoes dmaBufPhysListDmaMap. */
export function dmaBufPhysListDmaUnmap(m: DmaBufPhysListDma): void {
  const fn = "dma_buf_phys_list_dma_unmap";
  if (!(m instanceof DmaBufPhysListDma)) throw new DmaBufInputError(fn, "m", m, "a DmaBufPhysListDma from dmaBufPhysListDmaMap");
  if (m.unmapped) throw new DmaBufStateError("EINVAL", `${fn}: this mapping of ${m.dev.bdf} was unmapped already`);
  const { dev, list, mode, kinds, dir } = m;
  for (let i = 0; i < list.nrRanges; i++) {
    if (mode[i] === PhysListDmaMode.DIRECT) dmaUnmapPhys(dev, unsafeDmaAddr(m.dmaAddr[i] ?? 0), list.len[i] ?? 0, dir, kinds[i] === "p2p-host-bridge" ? DMA_ATTR_MMIO : 0);
  }
  if (m.state !== undefined) unlinkIova(dev, m.state, list, mode, kinds, m.iovaLen, dir);
  m[kMarkUnmapped]();
  list[kDmaMappings]--;
}

/**
 * Undoes a mapping but keeps its IOVA for the next dmaBufPhysListDmaMap(…, reuse): the links are
 * undone (one dma_iova_unlink per run of ranges with the same attributes, each one IOTLB invalidation),
 * the dma_map_phys ranges unmapped. An importer that remaps after every move saves the IOVA free and
 * allocation each time. dmaBufPhysListDmaFree gives the kept IOVA back.
 */
export function dmaBufPhysListDmaUnlink(m: DmaBufPhysListDma): void {
  const fn = "dma_buf_phys_list_dma_unlink";
  if (!(m instanceof DmaBufPhysListDma)) throw new DmaBufInputError(fn, "m", m, "a DmaBufPhysListDma from dmaBufPhysListDmaMap");
  if (m.unmapped) throw new DmaBufStateError("EINVAL", `${fn}: this mapping of ${m.dev.bdf} was unmapped already`);
  const { dev, list, mode, kinds, dir } = m;
  for (let i = 0; i < list.nrRanges; i++) {
    if (mode[i] === PhysListDmaMode.DIRECT) dmaUnmapPhys(dev, unsafeDmaAddr(m.dmaAddr[i] ?? 0), list.len[i] ?? 0, dir, kinds[i] === "p2p-host-bridge" ? DMA_ATTR_MMIO : 0);
  }
  const state = m.state;
  if (state !== undefined && dev.coherent) {
    // A coherent device needs no cache maintenance, so MMIO and RAM ranges unlink alike: one call,
    // one IOTLB invalidation.
    dmaIovaUnlink(dev, state, 0, m.iovaLen, dir, 0);
    m[kKeep](state);
  } else if (state !== undefined) {
    let runStart = 0;
    let runLen = 0;
    let runAttrs = -1;
    for (let i = 0; i <= list.nrRanges; i++) {
      const isIova = i < list.nrRanges && mode[i] === PhysListDmaMode.IOVA;
      if (i < list.nrRanges && !isIova) continue;
      const attrs = isIova ? (kinds[i] === "p2p-host-bridge" ? DMA_ATTR_MMIO : 0) : -2;
      if (attrs !== runAttrs && runLen > 0) {
        dmaIovaUnlink(dev, state, runStart, runLen, dir, runAttrs);
        runStart += runLen;
        runLen = 0;
      }
      runAttrs = attrs;
      if (isIova) runLen += list.len[i] ?? 0;
    }
    m[kKeep](state);
  }
  m[kMarkUnmapped]();
  list[kDmaMappings]--;
}

/** Gives back the IOVA dmaBufPhysListDmaUnlink kept (when no map reused it). */
export function dmaBufPhysListDmaFree(m: DmaBufPhysListDma): void {
  if (!(m instanceof DmaBufPhysListDma)) throw new DmaBufInputError("dma_buf_phys_list_dma_free", "m", m, "a DmaBufPhysListDma");
  const s = m[kTakeState]();
  if (s !== undefined) dmaIovaFree(m.dev, s);
}
