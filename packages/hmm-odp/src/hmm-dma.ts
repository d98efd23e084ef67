import type { HmmOdpEvent } from "./events.js";
import { DMA_ATTR_MMIO, DMA_MAPPING_ERROR, DmaDirection, DmaIovaState, PciP2pdmaMapState, dmaIovaFree, dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc, dmaIovaUnlink, dmaMapPhys, dmaMappingError, dmaNeedUnmap, dmaUnmapPhys, dmaUseIova, pciP2pdmaBusAddrMap, pciP2pdmaState, unsafeDmaAddr } from "@dmasim/dma";
import type { DmaAddr, DmaDevice } from "@dmasim/dma";
import { PAGE_SIZE, unsafePhysAddr } from "@dmasim/memory";
import { PciP2pdmaMapType } from "@dmasim/pcie-p2p";
import { HMM_PFN_DMA_MAPPED, HMM_PFN_P2PDMA, HMM_PFN_P2PDMA_BUS, HMM_PFN_VALID, HmmErrno } from "./constants.js";
import { HmmInputError } from "./errors.js";
import type { UserLock } from "./notifier.js";
import type { PhysAddr } from "@dmasim/memory";
import { kMapDev } from "./internal.js";

const BIDIR = DmaDirection.BIDIRECTIONAL;
const MAPPED = HMM_PFN_DMA_MAPPED;
const VALID_DMA = HMM_PFN_VALID | HMM_PFN_DMA_MAPPED;
const CLEAR_DMA = ~(HMM_PFN_DMA_MAPPED | HMM_PFN_P2PDMA | HMM_PFN_P2PDMA_BUS);

/**
 * struct hmm_dma_map: the IOVA state of the whole range, the pfn list (frames and flags in two typed
 * arrays; it doubles as hmm_range's output) and, only when there is no IOVA and the device needs unmaps,
 * a DMA address per entry.
 */
export class HmmDmaMap {
  /** The dma_iova_state of the map's IOVA range (used when the IOVA path is available). */
  readonly state = new DmaIovaState();
  /** The pfn part of the map's hmm_pfns, one entry per page. */
  pfns = new Uint32Array(0);
  /** The flag part of the map's hmm_pfns (HMM_PFN_DMA_MAPPED and the P2P bits are sticky). */
  flags = new Uint16Array(0);
  /** dma_list: the DMA address of each entry when there is no IOVA range (dma-direct or no IOMMU). */
  dmaList: Float64Array | undefined = undefined;
  /** dma_entry_size: bytes one entry covers (PAGE_SIZE, or more for a bigger device page). */
  dmaEntrySize = 0;
  /** Entries of the map (the range's pages divided by the entry size). */
  nrEntries = 0;
  /** Model only: the driver lock map and unmap must run under (checked when set). */
  userLock: UserLock | undefined = undefined;
  /** Reached through `@dmasim/hmm-odp/internal`: the device that allocated it. */
  [kMapDev]: DmaDevice | undefined = undefined;

  /** Host bytes of the map's bookkeeping: 6 per entry (4 pfn + 2 flags), plus dma_list when present. */
  get bookkeepingBytes(): number {
    return this.pfns.byteLength + this.flags.byteLength + (this.dmaList?.byteLength ?? 0) + 16;
  }
}

/** dma_addressing_limited, as far as the model's devices go: a dma-direct device whose mask misses some RAM. */
function dmaAddressingLimited(dev: DmaDevice): boolean {
  if (dev.ops === "iommu") return false;
  let top = 0;
  for (const r of dev.kernel.memory.regions()) if (r.kind === "ram") top = Math.max(top, r.base + r.size - 1);
  const limit = dev.busDmaLimit === 0 ? dev.dmaMask : Math.min(dev.dmaMask, dev.busDmaLimit);
  return limit < top;
}

/**
 * hmm_dma_map_alloc: -EOPNOTSUPP for a device that needs DMA syncs or bouncing (HMM cannot hand buffer
 * ownership back and forth) or cannot address all memory; otherwise reserves the IOVA for all
 * `nrEntries` pages up front (when the device uses iommu-dma) and returns 0.
 */
export function hmmDmaMapAlloc(dev: DmaDevice, map: HmmDmaMap, nrEntries: number, dmaEntrySize: number): number {
  const fn = "hmm_dma_map_alloc";
  if (!(map instanceof HmmDmaMap)) throw new HmmInputError(fn, "map", map, "an HmmDmaMap");
  if (!Number.isSafeInteger(nrEntries) || nrEntries < 1 || nrEntries * PAGE_SIZE > 2 ** 52) throw new HmmInputError(fn, "nrEntries", nrEntries, "a positive number of entries");
  if (!Number.isSafeInteger(dmaEntrySize) || dmaEntrySize < PAGE_SIZE || (dmaEntrySize & (dmaEntrySize - 1)) !== 0) {
    throw new HmmInputError(fn, "dmaEntrySize", dmaEntrySize, "a power of two >= PAGE_SIZE");
  }
  if (map[kMapDev] !== undefined) throw new HmmInputError(fn, "map", map, "a map not allocated yet (hmm_dma_map_free it first)");
  if (Math.floor((nrEntries * PAGE_SIZE) / dmaEntrySize) === 0) dev.kernel.debug.warnOnce(dev.bdf, fn, `${fn}: WARN_ON_ONCE(!(nr_entries * PAGE_SIZE / dma_entry_size))`);
  if (!dev.dmaSkipSync || dev.untrusted || dmaAddressingLimited(dev)) return -HmmErrno.EOPNOTSUPP;
  map.dmaEntrySize = dmaEntrySize;
  map.nrEntries = nrEntries;
  map.pfns = new Uint32Array(nrEntries);
  map.flags = new Uint16Array(nrEntries);
  const useIova = dmaIovaTryAlloc(dev, map.state, 0 as PhysAddr, nrEntries * PAGE_SIZE);
  map.dmaList = !useIova && dmaNeedUnmap(dev) ? new Float64Array(nrEntries) : undefined;
  map[kMapDev] = dev;
  return 0;
}

/** hmm_dma_map_free: frees the IOVA and the lists; every entry must have been unmapped first. */
export function hmmDmaMapFree(dev: DmaDevice, map: HmmDmaMap): void {
  if (map[kMapDev] !== dev) throw new HmmInputError("hmm_dma_map_free", "dev", dev.bdf, `the device that allocated the map (${map[kMapDev]?.bdf ?? "none"})`);
  if (dmaUseIova(map.state)) dmaIovaFree(dev, map.state);
  map.pfns = new Uint32Array(0);
  map.flags = new Uint16Array(0);
  map.dmaList = undefined;
  map.nrEntries = 0;
  map[kMapDev] = undefined;
}

function checkIdx(fn: string, dev: DmaDevice, map: HmmDmaMap, idx: number, count: number): void {
  if (map[kMapDev] !== dev) throw new HmmInputError(fn, "dev", dev.bdf, `the device that allocated the map (${map[kMapDev]?.bdf ?? "none: call hmm_dma_map_alloc"})`);
  if (!Number.isSafeInteger(idx) || idx < 0 || idx + count > map.nrEntries) throw new HmmInputError(fn, "idx", idx, `an entry index below ${map.nrEntries - count + 1}`);
}

function checkEntry(fn: string, dev: DmaDevice, map: HmmDmaMap, idx: number): void {
  const lock = map.userLock;
  if (lock !== undefined && !lock.held) dev.kernel.debug.report("hmm-dma-map-unlocked", dev.bdf, `${fn} outside ${lock.name}: an invalidation can run concurrently and leave the entry mapped`);
  if (((map.flags[idx] ?? 0) & HMM_PFN_VALID) === 0) dev.kernel.debug.report("hmm-dma-map-invalid-entry", dev.bdf, `${fn} of entry ${idx} without HMM_PFN_VALID: it maps whatever frame the list holds`);
}

/** prepare's answers that ask for a link (every other answer is final): plain, or as MMIO (DMA_ATTR_MMIO). */
const LINK = -2;
const LINK_MMIO = -3;

/**
 * The part of hmm_dma_map_pfn before the link: LINK or LINK_MMIO, else a final result (the address of
 * an entry already mapped, a bus address, or DMA_MAPPING_ERROR for a peer the device cannot reach).
 * Distinct from DMA_MAPPING_ERROR (-1), and no object per call for the attributes.
 */
function prepare(dev: DmaDevice, map: HmmDmaMap, idx: number, p2p: PciP2pdmaMapState): number {
  const f = map.flags[idx] ?? 0;
  const state = map.state;
  if ((f & MAPPED) !== 0 && (f & HMM_PFN_P2PDMA_BUS) === 0) {
    // A permission resync of an entry that is already mapped.
    if (dmaUseIova(state)) return state.addr + idx * map.dmaEntrySize;
    if (map.dmaList !== undefined) return map.dmaList[idx] ?? DMA_MAPPING_ERROR;
  }
  const phys = (map.pfns[idx] ?? 0) * PAGE_SIZE;
  switch (pciP2pdmaState(p2p, dev, phys as PhysAddr)) {
    case PciP2pdmaMapType.NONE:
      return LINK;
    case PciP2pdmaMapType.THRU_HOST_BRIDGE:
      map.flags[idx] = f | HMM_PFN_P2PDMA;
      return LINK_MMIO;
    case PciP2pdmaMapType.BUS_ADDR:
      map.flags[idx] = f | HMM_PFN_P2PDMA_BUS | MAPPED;
      // The reserved IOVA slot of this entry stays a hole.
      return p2p.mem === undefined ? DMA_MAPPING_ERROR : pciP2pdmaBusAddrMap(p2p.mem, phys as PhysAddr);
    default:
      return DMA_MAPPING_ERROR;
  }
}

/**
 * hmm_dma_map_pfn: maps entry `idx` (which must be VALID; call under the driver lock) and returns its DMA
 * address, or DMA_MAPPING_ERROR. With an IOVA: a link and an IOTLB sync for this one entry; P2P through
 * the host bridge is linked as MMIO; P2P by bus address returns the bus address and links nothing.
 */
export function hmmDmaMapPfn(dev: DmaDevice, map: HmmDmaMap, idx: number, p2p: PciP2pdmaMapState): DmaAddr {
  const fn = "hmm_dma_map_pfn";
  checkIdx(fn, dev, map, idx, 1);
  checkEntry(fn, dev, map, idx);
  const pre = prepare(dev, map, idx, p2p);
  if (pre !== LINK && pre !== LINK_MMIO) return pre as DmaAddr;
  const attrs = pre === LINK_MMIO ? DMA_ATTR_MMIO : 0;
  const state = map.state;
  const size = map.dmaEntrySize;
  const offset = idx * size;
  const phys = (map.pfns[idx] ?? 0) * PAGE_SIZE;
  let addr: number;
  if (dmaUseIova(state)) {
    if (dmaIovaLink(dev, state, unsafePhysAddr(phys), offset, size, BIDIR, attrs) !== 0) return mapError(map, idx);
    if (dmaIovaSync(dev, state, offset, size) !== 0) {
      dmaIovaUnlink(dev, state, offset, size, BIDIR, attrs);
      return mapError(map, idx);
    }
    addr = state.addr + offset;
  } else {
    addr = dmaMapPhys(dev, unsafePhysAddr(phys), size, BIDIR, attrs);
    if (dmaMappingError(dev, unsafeDmaAddr(addr))) return mapError(map, idx);
    if (map.dmaList !== undefined) map.dmaList[idx] = addr;
  }
  map.flags[idx] = (map.flags[idx] ?? 0) | MAPPED;
  emitMapPfn(dev, map, idx, addr);
  return addr as DmaAddr;
}

function emitMapPfn(dev: DmaDevice, map: HmmDmaMap, idx: number, addr: number): void {
  const trace = dev.kernel.trace;
  if (trace.events.active) trace.events.view<HmmOdpEvent>().emit({ type: "hmm.dma-map-pfn", t: trace.clock.now, device: dev.bdf, index: idx, pfn: map.pfns[idx] ?? 0, addr: addr as DmaAddr });
}

function mapError(map: HmmDmaMap, idx: number): DmaAddr {
  map.flags[idx] = (map.flags[idx] ?? 0) & ~HMM_PFN_P2PDMA;
  return DMA_MAPPING_ERROR;
}

/**
 * ★ Beyond upstream: hmm_dma_map_pfn over entries [idx, idx + count) with one dma_iova_sync for the run
 * instead of one per entry. Entries already mapped are kept; `out` (when given) receives each entry's DMA
 * address. Returns the number of entries mapped from `idx` before the first failure (== count on success);
 * a failed entry has DMA_MAPPING_ERROR in `out` and the run stops there, the entries before it synced.
 */
export function hmmDmaMapPfnRun(dev: DmaDevice, map: HmmDmaMap, idx: number, count: number, p2p: PciP2pdmaMapState, out?: Float64Array): number {
  const fn = "hmm_dma_map_pfn_run";
  if (!Number.isSafeInteger(count) || count < 1) throw new HmmInputError(fn, "count", count, "a positive number of entries");
  checkIdx(fn, dev, map, idx, count);
  if (out !== undefined && out.length < count) throw new HmmInputError(fn, "out", out, `room for ${count} addresses`);
  const state = map.state;
  const iova = dmaUseIova(state);
  const size = map.dmaEntrySize;
  let lo = -1;
  let hi = -1;
  let done = 0;
  for (let j = 0; j < count; j++) {
    const i = idx + j;
    checkEntry(fn, dev, map, i);
    const pre = prepare(dev, map, i, p2p);
    let addr: number;
    if (pre !== LINK && pre !== LINK_MMIO) {
      addr = pre;
    } else if (iova) {
      const offset = i * size;
      if (dmaIovaLink(dev, state, unsafePhysAddr((map.pfns[i] ?? 0) * PAGE_SIZE), offset, size, BIDIR, pre === LINK_MMIO ? DMA_ATTR_MMIO : 0) !== 0) {
        addr = mapError(map, i);
      } else {
        map.flags[i] = (map.flags[i] ?? 0) | MAPPED;
        if (lo < 0) lo = offset;
        hi = offset + size;
        addr = state.addr + offset;
        emitMapPfn(dev, map, i, addr);
      }
    } else {
      addr = hmmDmaMapPfn(dev, map, i, p2p);
    }
    if (out !== undefined) out[j] = addr;
    if (addr === DMA_MAPPING_ERROR) break;
    done++;
  }
  if (lo >= 0) dmaIovaSync(dev, state, lo, hi - lo);
  return done;
}

/**
 * hmm_dma_unmap_pfn: undoes the mapping of entry `idx`; false (and nothing done) unless the entry has
 * both VALID and DMA_MAPPED, so a caller that clears VALID first leaks the mapping, as upstream.
 */
export function hmmDmaUnmapPfn(dev: DmaDevice, map: HmmDmaMap, idx: number): boolean {
  const fn = "hmm_dma_unmap_pfn";
  checkIdx(fn, dev, map, idx, 1);
  const f = map.flags[idx] ?? 0;
  if ((f & VALID_DMA) !== VALID_DMA) return false;
  const lock = map.userLock;
  if (lock !== undefined && !lock.held) dev.kernel.debug.report("hmm-dma-map-unlocked", dev.bdf, `${fn} outside ${lock.name}`);
  const attrs = (f & HMM_PFN_P2PDMA) !== 0 ? DMA_ATTR_MMIO : 0;
  const size = map.dmaEntrySize;
  if ((f & HMM_PFN_P2PDMA_BUS) !== 0) {
    // A bus address: nothing was mapped.
  } else if (dmaUseIova(map.state)) {
    dmaIovaUnlink(dev, map.state, idx * size, size, BIDIR, attrs);
  } else if (map.dmaList !== undefined) {
    dmaUnmapPhys(dev, unsafeDmaAddr(map.dmaList[idx] ?? 0), size, BIDIR, attrs);
  }
  map.flags[idx] = f & CLEAR_DMA;
  const trace = dev.kernel.trace;
  if (trace.events.active) trace.events.view<HmmOdpEvent>().emit({ type: "hmm.dma-unmap-pfn", t: trace.clock.now, device: dev.bdf, index: idx });
  return true;
}

/** A fresh p2p state for a batch of hmm_dma_map_pfn calls (struct pci_p2pdma_map_state, zeroed). */
export function hmmP2pState(): PciP2pdmaMapState {
  return new PciP2pdmaMapState();
}
