import { PAGE_SIZE, PageFlag, type PhysAddr } from "@dmasim/memory";
import { Counter } from "./counters.js";
import { apiBegin, apiEnd, checkDevice } from "./api-trace.js";
import { DMA_ATTR_MMIO, DMA_ATTR_REQUIRE_COHERENT, DMA_BIT_MASK, DMA_MAPPING_ERROR, DmaDirection, Errno } from "./constants.js";
import type { DmaAddr } from "./constants.js";
import type { DmaDevice } from "./device.js";
import type { DebugFinding } from "./debug/checker.js";
import { dmaDirectMapPhys, dmaDirectSyncSingleForCpu, dmaDirectSyncSingleForDevice, dmaDirectUnmapPhys } from "./direct.js";
import { DmaInputError } from "./errors.js";
import { countPageLookup, iommuDmaMapPhys, iommuDmaSyncSingleForCpu, iommuDmaSyncSingleForDevice, iommuDmaUnmapPhys } from "./iommu-dma.js";
import { checkAddr, checkAttrs, checkDir, checkMapSize, checkRange, checkSize, isAttrs, isBoundDevice, isPowerOfTwoMinusOne, isRange } from "./validate.js";

// Module-local copies for the hot tests below: an imported constant's property is two loads in the
// bytecode, and bytecode size is what V8's inlining budget counts (see the README's benchmark notes).
const DIR_BIDIRECTIONAL = DmaDirection.BIDIRECTIONAL;
const DIR_TO_DEVICE = DmaDirection.TO_DEVICE;
const DIR_FROM_DEVICE = DmaDirection.FROM_DEVICE;
const MAPPING_ERROR = DMA_MAPPING_ERROR;
const ENOMEM = Errno.ENOMEM;

/** checkMapDir would pass: a direction other than DMA_NONE. */
function isMapDir(dir: number): boolean {
  return dir === DIR_BIDIRECTIONAL || dir === DIR_TO_DEVICE || dir === DIR_FROM_DEVICE;
}

// The classic single-mapping API (kernel/dma/mapping.c): dma_map_phys and the wrappers built on it,
// syncs, and the device's DMA parameters.

function checkMapDir(fn: string, dir: number): asserts dir is DmaDirection {
  checkDir(fn, dir);
  // BUG_ON(!valid_dma_direction(dir)): mapping or syncing for DMA_NONE is a driver bug, refused as bad input.
  if (dir === DmaDirection.NONE) throw new DmaInputError(fn, "dir", dir, "a valid direction for a mapping: BIDIRECTIONAL, TO_DEVICE or FROM_DEVICE");
}

/** Page flags for dma-debug's map checks; -1 for a frame without a struct page. */
function pageFlags(dev: DmaDevice): (phys: number) => number {
  const pages = dev.kernel.memory.pages;
  return (phys) => {
    const pfn = Math.floor(phys / PAGE_SIZE);
    return pages.hasPage(pfn) ? pages.flags(pfn) : -1;
  };
}

/** A DMA_ATTR_REQUIRE_COHERENT map for a non-coherent device: counted as a failed map (out of mapPhys's bytecode). */
function refuseRequireCoherent(dev: DmaDevice): DmaAddr {
  const counters = dev.kernel.trace.counters;
  counters.add(Counter.DmaMapCalls);
  counters.add(Counter.DmaMappingErrors);
  return DMA_MAPPING_ERROR;
}

/**
 * dma-debug's checks of a map, before it is made. debug_dma_map_phys (kernel/dma/debug.c) skips the page
 * checks for DMA_ATTR_MMIO; its findings are held until the map succeeds ("throw" refuses the map up
 * front instead), so a failed map records nothing. Out of mapPhys's bytecode: it runs only with
 * dma-debug on.
 */
function debugCheckMap(dev: DmaDevice, phys: number, size: number, dir: DmaDirection, attrs: number): DebugFinding[] | undefined {
  const debug = dev.kernel.debug;
  return debug.checkMap(dev.bdf, phys as PhysAddr, size, dir, attrs, (attrs & DMA_ATTR_MMIO) === 0 ? (debug.pageFlags ?? pageFlags(dev)) : undefined, true);
}

/**
 * dma_map_phys: map [phys, phys+size) for `dev`. Returns the DMA address, or DMA_MAPPING_ERROR which the
 * caller must test with dmaMappingError() (dma-debug checks that it did).
 */
export function dmaMapPhys(dev: DmaDevice, phys: PhysAddr, size: number, dir: DmaDirection, attrs = 0): DmaAddr {
  // One combined test for the usual valid call; the precise checks, in order, only when it fails.
  if (!(isBoundDevice(dev) && isRange(phys, size) && size !== 0 && isMapDir(dir) && isAttrs(attrs))) checkMapArgs("dma_map_phys", "phys", dev, phys, size, dir, attrs);
  return mapPhys("dma_map_phys", dev, phys, size, dir, attrs);
}

/**
 * The precise checks of a map (dma_map_phys, dma_map_resource: `argument` names the address), in order; throws for the first that fails. A function of its own so
 * that the entry point's bytecode stays small: V8 inlines a call chain only while the bytecode it
 * inlines fits one budget, and the map path spends it on the layers below. With the other refusals,
 * WARN texts and trace events of the pair moved out the same way: `npx vitest bench --run --project dma
 * src/dma.bench.ts -t "classic, strict, dma-debug off"` 311 → 270 ns (10a4e11: 230; three alternating
 * runs each, load average 13-18; the README's "The classic pair's inlining budget").
 */
function checkMapArgs(fn: string, argument: string, dev: DmaDevice, phys: number, size: number, dir: number, attrs: number): void {
  checkDevice(fn, dev);
  checkRange(fn, argument, phys, size);
  checkMapSize(fn, size);
  checkMapDir(fn, dir);
  checkAttrs(fn, attrs);
}

function mapPhys(fn: string, dev: DmaDevice, phys: number, size: number, dir: DmaDirection, attrs: number): DmaAddr {
  const kernel = dev.kernel;
  const trace = kernel.trace;
  // dma_map_phys (kernel/dma/mapping.c): a mapping that must stay coherent without any cache maintenance
  // cannot be made for a device that does not snoop the CPU caches. Refused before a path is chosen, so
  // dma-direct and iommu-dma alike map nothing, sync nothing and tell dma-debug nothing.
  if ((attrs & DMA_ATTR_REQUIRE_COHERENT) !== 0 && !dev.coherent) return refuseRequireCoherent(dev);
  const active = trace.events.active;
  // dma-debug's checks and bookkeeping do nothing when it is off: skip building their arguments.
  const debug = kernel.debug.mode !== "off";
  const findings = debug ? debugCheckMap(dev, phys, size, dir, attrs) : undefined;
  if (active) apiBegin(dev, fn);
  trace.counters.add(Counter.DmaMapCalls);
  const addr = dev.ops === "iommu" ? iommuDmaMapPhys(dev, phys, size, dir, attrs) : dmaDirectMapPhys(dev, phys, size, dir, attrs);
  if (addr === DMA_MAPPING_ERROR) trace.counters.add(Counter.DmaMappingErrors);
  else if (debug) kernel.debug.addPhys(dev.bdf, addr, size, phys as PhysAddr, dir, attrs, findings);
  if (active) apiEnd(dev, fn, addr);
  return addr;
}

/** dma_unmap_phys. */
export function dmaUnmapPhys(dev: DmaDevice, addr: DmaAddr, size: number, dir: DmaDirection, attrs = 0): void {
  if (!(isBoundDevice(dev) && isRange(addr, size) && isMapDir(dir) && isAttrs(attrs))) checkUnmapArgs("dma_unmap_phys", dev, addr, size, dir, attrs);
  unmapPhys("dma_unmap_phys", dev, addr, size, dir, attrs);
}

/** The precise checks of an unmap (dma_unmap_phys, dma_unmap_page_attrs), in order; out of line as checkMapArgs. */
function checkUnmapArgs(fn: string, dev: DmaDevice, addr: number, size: number, dir: number, attrs: number): void {
  checkDevice(fn, dev);
  if (addr !== DMA_MAPPING_ERROR) checkRange(fn, "addr", addr, size);
  checkMapDir(fn, dir);
  checkAttrs(fn, attrs);
}

function unmapPhys(fn: string, dev: DmaDevice, addr: number, size: number, dir: DmaDirection, attrs: number): void {
  const kernel = dev.kernel;
  const debug = kernel.debug.mode !== "off";
  // dma-debug runs its checks before the unmap here (upstream: after), so that in "throw" mode a refused
  // unmap leaves the mapping and the bookkeeping consistent. Off, it finds nothing: no reference is built.
  const mapped = debug ? kernel.debug.unmapPhys(dev.bdf, addr as DmaAddr, size, dir) : -1;
  if (addr === DMA_MAPPING_ERROR) return;
  if (debug && mapped < 0) return;
  // A size mismatch has been reported by now; in "collect" mode the model carries on, undoing the mapping
  // that was made rather than the size passed. Upstream would unmap the wrong range and hand the wrong
  // size back to the IOVA cache (or trip swiotlb's own size check); the report is the finding, and a
  // model that corrupted itself afterwards could not show the driver's next bug.
  const len = mapped < 0 ? size : mapped;
  const trace = kernel.trace;
  const active = trace.events.active;
  if (active) apiBegin(dev, fn);
  trace.counters.add(Counter.DmaUnmapCalls);
  if (dev.ops === "iommu") iommuDmaUnmapPhys(dev, addr, len, dir, attrs);
  else dmaDirectUnmapPhys(dev, addr, len, dir, attrs);
  if (active) apiEnd(dev, fn, 0);
}

/**
 * dma_map_page_attrs: `pfn` stands for the struct page. DMA_ATTR_MMIO is refused quietly (a page is never
 * MMIO: DMA_MAPPING_ERROR, no WARN, as kernel/dma/mapping.c); P2P pages are refused with WARN_ON_ONCE
 * (DMA_MAPPING_ERROR): P2P memory must go through a path that knows its provider.
 */
export function dmaMapPage(dev: DmaDevice, pfn: number, offset: number, size: number, dir: DmaDirection, attrs = 0): DmaAddr {
  const fn = "dma_map_page_attrs";
  // pfn and offset are tested as numbers before they take part in arithmetic (a BigInt would throw there).
  if (!(isBoundDevice(dev) && isRange(pfn, offset) && isRange(pfn * PAGE_SIZE + offset, size) && size !== 0 && isMapDir(dir) && isAttrs(attrs))) {
    checkDevice(fn, dev);
    checkAddr(fn, "pfn", pfn);
    checkSize(fn, "offset", offset);
    checkRange(fn, "page_to_phys(page) + offset", pfn * PAGE_SIZE + offset, size);
    checkMapSize(fn, size);
    checkMapDir(fn, dir);
    checkAttrs(fn, attrs);
  }
  const phys = pfn * PAGE_SIZE + offset;
  const pages = dev.kernel.memory.pages;
  if (!pages.hasPage(pfn)) throw new DmaInputError(fn, "pfn", pfn, "a page frame that has a struct page (RAM or ZONE_DEVICE)");
  if ((attrs & DMA_ATTR_MMIO) !== 0) return DMA_MAPPING_ERROR;
  // pages.flags() counts the lookup (is_pci_p2pdma_page).
  if ((pages.flags(pfn) & PageFlag.P2PDMA) !== 0) {
    dev.kernel.debug.warnOnce(dev.bdf, fn + "/p2p", "dma_map_page_attrs: WARN_ON_ONCE(is_pci_p2pdma_page(page)): P2P pages need the P2P-aware mapping paths");
    return DMA_MAPPING_ERROR;
  }
  return mapPhys(fn, dev, phys, size, dir, attrs);
}

/**
 * dma_unmap_page_attrs. With DMA_ATTR_MMIO it does nothing at all (kernel/dma/mapping.c returns before
 * dma_unmap_phys and dma-debug): dma_map_page_attrs never made such a mapping.
 */
export function dmaUnmapPage(dev: DmaDevice, addr: DmaAddr, size: number, dir: DmaDirection, attrs = 0): void {
  const fn = "dma_unmap_page_attrs";
  if (!(isBoundDevice(dev) && isRange(addr, size) && isMapDir(dir) && isAttrs(attrs))) checkUnmapArgs(fn, dev, addr, size, dir, attrs);
  if ((attrs & DMA_ATTR_MMIO) !== 0) return;
  unmapPhys(fn, dev, addr, size, dir, attrs);
}

/**
 * dma_map_resource: map MMIO (a peer's BAR, a doorbell) that has no struct page. Memory with a struct page
 * is refused (WARN_ON_ONCE(pfn_valid), DMA_MAPPING_ERROR).
 */
export function dmaMapResource(dev: DmaDevice, physAddr: PhysAddr, size: number, dir: DmaDirection, attrs = 0): DmaAddr {
  const fn = "dma_map_resource";
  checkMapArgs(fn, "phys_addr", dev, physAddr, size, dir, attrs);
  countPageLookup(dev);
  if (dev.kernel.memory.pages.hasPage(Math.floor(physAddr / PAGE_SIZE))) {
    dev.kernel.debug.warnOnce(dev.bdf, fn, `dma_map_resource: WARN_ON_ONCE(pfn_valid(0x${Math.floor(physAddr / PAGE_SIZE).toString(16)})): memory with a struct page is not a resource`);
    return DMA_MAPPING_ERROR;
  }
  return mapPhys(fn, dev, physAddr, size, dir, attrs | DMA_ATTR_MMIO);
}

/** dma_unmap_resource. */
export function dmaUnmapResource(dev: DmaDevice, addr: DmaAddr, size: number, dir: DmaDirection, attrs = 0): void {
  const fn = "dma_unmap_resource";
  checkDevice(fn, dev);
  if (addr !== DMA_MAPPING_ERROR) checkRange(fn, "addr", addr, size);
  checkMapDir(fn, dir);
  checkAttrs(fn, attrs);
  unmapPhys(fn, dev, addr, size, dir, attrs | DMA_ATTR_MMIO);
}

/** dma_mapping_error: -Errno.ENOMEM for DMA_MAPPING_ERROR, else 0; tells dma-debug the driver checked. */
export function dmaMappingError(dev: DmaDevice, addr: DmaAddr): number {
  if (!(isBoundDevice(dev) && (addr === MAPPING_ERROR || isRange(addr, 0)))) refuseMappingError(dev, addr);
  dev.kernel.debug.markChecked(dev.bdf, addr);
  return addr === MAPPING_ERROR ? -ENOMEM : 0;
}

/** dma_mapping_error's refusal of a bad device or handle; out of line as checkMapArgs. */
function refuseMappingError(dev: DmaDevice, addr: unknown): never {
  const fn = "dma_mapping_error";
  checkDevice(fn, dev);
  // An undefined or non-numeric handle is not "no error": the driver tested something that is not a DMA address.
  throw new DmaInputError(fn, "dma_addr", addr, "a DMA address returned by a map call, or DMA_MAPPING_ERROR");
}

/**
 * dma-debug's check_sync, and the length the sync then moves. A sync that runs past the end of its mapping
 * has been reported by now ("collect" carries on); like swiotlb_bounce (kernel/dma/swiotlb.c), which warns
 * "Buffer overflow detected" and clamps to the slot, the model moves only the part inside the mapping.
 */
function syncLength(dev: DmaDevice, addr: number, size: number, dir: DmaDirection, toCpu: boolean): number {
  const end = dev.kernel.debug.syncEnd(dev.bdf, addr as DmaAddr, size, dir, toCpu);
  if (end < 0 || addr + size <= end) return size;
  return Math.max(0, end - addr);
}

/** dma_sync_single_for_cpu: make what the device wrote visible to the CPU (bounce back, invalidate). */
export function dmaSyncSingleForCpu(dev: DmaDevice, addr: DmaAddr, size: number, dir: DmaDirection): void {
  const fn = "dma_sync_single_for_cpu";
  if (!(isBoundDevice(dev) && isRange(addr, size) && isMapDir(dir))) {
    checkDevice(fn, dev);
    checkRange(fn, "addr", addr, size);
    checkMapDir(fn, dir);
  }
  const len = syncLength(dev, addr, size, dir, true);
  apiBegin(dev, fn);
  dev.kernel.trace.counters.add(Counter.DmaSyncCalls);
  if (dev.ops === "iommu") iommuDmaSyncSingleForCpu(dev, addr, len, dir);
  else dmaDirectSyncSingleForCpu(dev, addr, len, dir);
  apiEnd(dev, fn, 0);
}

/** dma_sync_single_for_device: make what the CPU wrote visible to the device (write back, bounce). */
export function dmaSyncSingleForDevice(dev: DmaDevice, addr: DmaAddr, size: number, dir: DmaDirection): void {
  const fn = "dma_sync_single_for_device";
  if (!(isBoundDevice(dev) && isRange(addr, size) && isMapDir(dir))) {
    checkDevice(fn, dev);
    checkRange(fn, "addr", addr, size);
    checkMapDir(fn, dir);
  }
  const len = syncLength(dev, addr, size, dir, false);
  apiBegin(dev, fn);
  dev.kernel.trace.counters.add(Counter.DmaSyncCalls);
  if (dev.ops === "iommu") iommuDmaSyncSingleForDevice(dev, addr, len, dir);
  else dmaDirectSyncSingleForDevice(dev, addr, len, dir);
  apiEnd(dev, fn, 0);
}

/**
 * dma_need_unmap: true unless the device is direct-mapped and needs no syncs. With dma-debug enabled the
 * kernel always answers true (so the debug code sees every unmap); dmasim does the same unless
 * `debug: "off"`.
 */
export function dmaNeedUnmap(dev: DmaDevice): boolean {
  if (!isBoundDevice(dev)) checkDevice("dma_need_unmap", dev);
  if (dev.ops !== "direct") return true;
  if (!dev.dmaSkipSync) return true;
  return dev.kernel.debug.enabled;
}

/** dma_get_merge_boundary: the IOVA granule - 1 for iommu-dma (segments can merge across it), else 0. */
export function dmaGetMergeBoundary(dev: DmaDevice): number {
  checkDevice("dma_get_merge_boundary", dev);
  return dev.ops === "iommu" ? dev.granule - 1 : 0;
}

/**
 * dma_get_cache_alignment: ARCH_DMA_MINALIGN, the alignment a buffer needs not to share a cache line with
 * other data. Upstream takes no argument (it is a build constant); dmasim reads the device's kernel.
 */
export function dmaGetCacheAlignment(dev: DmaDevice): number {
  return dev.kernel.archDmaMinalign;
}

/**
 * dma_get_max_seg_size: the longest DMA segment the device takes, in bytes; throws `DmaInputError` for an unbound
 * device.
 */
export function dmaGetMaxSegSize(dev: DmaDevice): number {
  checkDevice("dma_get_max_seg_size", dev);
  return dev.maxSegmentSize;
}

/** dma_get_seg_boundary: the mask a segment may not cross; throws `DmaInputError` for an unbound device. */
export function dmaGetSegBoundary(dev: DmaDevice): number {
  checkDevice("dma_get_seg_boundary", dev);
  return dev.segBoundaryMask;
}

/** dma_get_mask: the device's streaming DMA mask; throws `DmaInputError` for an unbound device. */
export function dmaGetMask(dev: DmaDevice): number {
  checkDevice("dma_get_mask", dev);
  return dev.dmaMask;
}

/** dma_supported: iommu-dma takes any mask; dma-direct needs one that covers ZONE_DMA (24 bits). */
function dmaSupported(dev: DmaDevice, mask: number): boolean {
  if (dev.ops === "iommu") return true;
  if (mask >= DMA_BIT_MASK(32)) return true;
  let ramEnd = 0;
  for (const r of dev.kernel.memory.regions()) if (r.kind === "ram") ramEnd = Math.max(ramEnd, r.base + r.size);
  const minMask = Math.min(Math.max(ramEnd - PAGE_SIZE, 0), DMA_BIT_MASK(24));
  return mask >= minMask + dev.busOffset;
}

function checkMask(fn: string, mask: number): void {
  if (!Number.isSafeInteger(mask) || mask < 0) throw new DmaInputError(fn, "mask", mask, "a DMA mask such as DMA_BIT_MASK(64)");
}

/** dma_set_mask: 0, or -EIO when the mask cannot be supported (the old mask stays). */
export function dmaSetMask(dev: DmaDevice, mask: number): number {
  checkDevice("dma_set_mask", dev);
  checkMask("dma_set_mask", mask);
  if (!dmaSupported(dev, mask)) return -Errno.EIO;
  dev.dmaMask = mask;
  return 0;
}

/** dma_set_coherent_mask. */
export function dmaSetCoherentMask(dev: DmaDevice, mask: number): number {
  checkDevice("dma_set_coherent_mask", dev);
  checkMask("dma_set_coherent_mask", mask);
  if (!dmaSupported(dev, mask)) return -Errno.EIO;
  dev.coherentDmaMask = mask;
  return 0;
}

/** dma_set_mask_and_coherent. */
export function dmaSetMaskAndCoherent(dev: DmaDevice, mask: number): number {
  checkDevice("dma_set_mask_and_coherent", dev);
  const rc = dmaSetMask(dev, mask);
  return rc === 0 ? dmaSetCoherentMask(dev, mask) : rc;
}

/** dma_set_max_seg_size. */
export function dmaSetMaxSegSize(dev: DmaDevice, size: number): void {
  checkDevice("dma_set_max_seg_size", dev);
  if (!Number.isSafeInteger(size) || size < 1 || size > 0xffffffff) throw new DmaInputError("dma_set_max_seg_size", "size", size, "a positive number of bytes that fits in 32 bits");
  dev.maxSegmentSize = size;
}

/** dma_set_seg_boundary: the mask must be one less than a power of two. */
export function dmaSetSegBoundary(dev: DmaDevice, mask: number): void {
  checkDevice("dma_set_seg_boundary", dev);
  // Exact test: 32-bit `&` truncates masks above 4 GiB and Math.log2 rounds 2^52 + 1 to 52.
  if (!isPowerOfTwoMinusOne(mask)) {
    throw new DmaInputError("dma_set_seg_boundary", "mask", mask, "2^n - 1");
  }
  dev.segBoundaryMask = mask;
}

/** dma_set_min_align_mask. */
export function dmaSetMinAlignMask(dev: DmaDevice, mask: number): void {
  checkDevice("dma_set_min_align_mask", dev);
  if (!isPowerOfTwoMinusOne(mask)) {
    throw new DmaInputError("dma_set_min_align_mask", "mask", mask, "2^n - 1");
  }
  dev.minAlignMask = mask;
}
