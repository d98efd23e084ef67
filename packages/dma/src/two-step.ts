import { Counter } from "@dmasim/trace";
import {
  archSyncDmaForCpu,
  archSyncDmaForDevice,
  devUseSwiotlb,
  isSwiotlbBuffer,
  swiotlbTblUnmapSingle,
} from "./bounce.js";
import { DMA_ATTR_ALL, DMA_ATTR_MMIO, DMA_ATTR_PRIVILEGED, DMA_ATTR_REQUIRE_COHERENT, DMA_ATTR_SKIP_CPU_SYNC, DmaDirection, Errno } from "./constants.js";
import type { DmaAddr } from "./constants.js";
import type { DmaDevice } from "./device.js";
import {
  allocIova,
  cookieOf,
  dmaInfoToProt,
  domainOf,
  iommuDmaMapSwiotlb,
  iommuDmaUnmapRange,
  iommuMapNosync,
  iovaAlignUp,
  iovaOffset,
  iovaUnaligned,
} from "./iommu-dma.js";
import { iommuDmaFreeIova } from "./iova/index.js";
import { apiBegin, apiEnd, checkDevice } from "./api-trace.js";
import { checkAttrs, checkDir, checkRange, checkSize, isAttrs, isBoundRange, isDir, isIndex } from "./validate.js";

// Module-local copies of what dma_iova_link's fast path reads, 256 times per batch of a typical driver:
// the test runner (and any loader that keeps live bindings as getters) turns each use of an imported
// binding into a getter call, which costs as much as the rest of a link. Locals never do.
const C_IOVA_LINKS = Counter.DmaIovaLinks;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const EINVAL = Errno.EINVAL;
const ATTR_PRIVILEGED = DMA_ATTR_PRIVILEGED;
/** Attributes a link of a coherent device may carry and still take linkFast (MMIO and
 *  REQUIRE_COHERENT change the checks and the protection, and go the general way). */
const FAST_LINK_ATTRS = DMA_ATTR_ALL & ~(DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT);
/** The same for the inlined path of dmaIovaLink, which also leaves PRIVILEGED (another prot) to linkFast. */
const INLINE_LINK_ATTRS = FAST_LINK_ATTRS & ~DMA_ATTR_PRIVILEGED;
const DIR_BIDIRECTIONAL = DmaDirection.BIDIRECTIONAL;
const DIR_TO_DEVICE = DmaDirection.TO_DEVICE;
const DIR_FROM_DEVICE = DmaDirection.FROM_DEVICE;
/** dma_info_to_prot of a coherent device, by direction (BIDIRECTIONAL, TO_DEVICE, FROM_DEVICE), and
 *  the bit DMA_ATTR_PRIVILEGED adds: computed by dmaInfoToProt itself so the two cannot disagree. */
const COHERENT_PROT = [DIR_BIDIRECTIONAL, DIR_TO_DEVICE, DIR_FROM_DEVICE].map((d) => dmaInfoToProt(d, true, 0));
const PRIV_PROT = dmaInfoToProt(DIR_TO_DEVICE, true, ATTR_PRIVILEGED) & ~dmaInfoToProt(DIR_TO_DEVICE, true, 0);
const mapNosync = iommuMapNosync;
const validIndex = isIndex;
const validDir = isDir;
const validAttrs = isAttrs;
const validBoundRange = isBoundRange;

/**
 * struct dma_iova_state. `addr` is the IOVA of byte 0 of what was asked for (it keeps the first range's
 * offset inside its granule). The kernel packs DMA_IOVA_USE_SWIOTLB into bit 63 of `__size`; dmasim keeps
 * sizes as safe integers, so the flag is a separate field with the same meaning.
 */
export class DmaIovaState {
  addr = 0 as DmaAddr;
  /** Bytes asked for in dma_iova_try_alloc; 0 when the IOVA path is not in use. */
  size = 0;
  /** DMA_IOVA_USE_SWIOTLB: some range of this state was bounced. */
  useSwiotlb = false;
}

/**
 * sizeof(struct dma_iova_state) on 64-bit: the bookkeeping a caller of the two-step API keeps per
 * mapping (a dma_addr_t and a u64).
 */
export const DMA_IOVA_STATE_BYTES = 16;

/** dma_use_iova: the state holds an IOVA allocation. */
export function dmaUseIova(state: DmaIovaState): boolean {
  return state.size !== 0;
}

/** dma_iova_size: bytes asked for, without the swiotlb flag. */
export function dmaIovaSize(state: DmaIovaState): number {
  return state.size;
}

/**
 * dma_iova_try_alloc: reserve IOVA space for `size` bytes whose first byte sits at `phys`'s offset in a
 * granule. Returns false (state zeroed) when the device does not use iommu-dma, on a zero size, or when
 * the IOVA space under the device's mask is exhausted.
 */
export function dmaIovaTryAlloc(dev: DmaDevice, state: DmaIovaState, phys: number, size: number): boolean {
  const fn = "dma_iova_try_alloc";
  if (!validBoundRange(dev, phys, size)) {
    checkDevice(fn, dev);
    checkRange(fn, "phys", phys, size);
  }
  state.addr = 0 as DmaAddr;
  state.size = 0;
  state.useSwiotlb = false;
  if (dev.ops !== "iommu") return false;
  apiBegin(dev, fn);
  dev.kernel.trace.counters.add(Counter.DmaIovaTryAllocs);
  if (size === 0) {
    dev.kernel.debug.warnOnce(dev.bdf, fn, "dma_iova_try_alloc: WARN_ON_ONCE(!size)");
    apiEnd(dev, fn, 0);
    return false;
  }
  const off = iovaOffset(dev, phys);
  const addr = allocIova(dev, iovaAlignUp(dev, size + off), dev.dmaMask);
  if (addr === 0) {
    apiEnd(dev, fn, 0);
    return false;
  }
  state.addr = (addr + off) as DmaAddr;
  state.size = size;
  dev.kernel.iovaTracker.allocated(state, dev.bdf, state.addr, size, dev.granule);
  apiEnd(dev, fn, 1);
  return true;
}

/** dma_iova_free: give the IOVA back at once (no flush queue); every link must be undone already. */
export function dmaIovaFree(dev: DmaDevice, state: DmaIovaState): void {
  const fn = "dma_iova_free";
  checkDevice(fn, dev);
  if (dev.ops !== "iommu" || !dmaUseIova(state)) return;
  if (!dev.kernel.iovaTracker.free(state, dev.bdf)) return;
  apiBegin(dev, fn);
  const pad = iovaOffset(dev, state.addr);
  iommuDmaFreeIova(cookieOf(dev), state.addr - pad, iovaAlignUp(dev, state.size + pad), dev.kernel.cpu);
  dev.kernel.iovaTracker.released(state);
  apiEnd(dev, fn, 0);
}

/** __dma_iova_link: CPU cache maintenance for non-coherent devices, then PTE writes with no IOTLB sync. */
function linkRange(dev: DmaDevice, addr: number, phys: number, size: number, dir: DmaDirection, attrs: number): number {
  // iommu_map of nothing succeeds without touching the table (its loop never runs); the IOMMU model
  // refuses an empty range as bad input, so an empty link stops here.
  if (size === 0) return 0;
  if (!dev.coherent && (attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO)) === 0) archSyncDmaForDevice(dev, phys, size, dir);
  return iommuMapNosync(dev, addr, phys, size, dmaInfoToProt(dir, dev.coherent, attrs));
}

/** iommu_dma_iova_bounce_and_link: bounce a partial granule and link the slot's granule. */
function bounceAndLink(dev: DmaDevice, addr: number, phys: number, len: number, dir: DmaDirection, attrs: number, startPad: number): number {
  const bounce = iommuDmaMapSwiotlb(dev, phys, len, dir, attrs);
  if (bounce < 0) return -Errno.ENOMEM;
  // Upstream links the slot's granule at bounce - startPad: that is granule-aligned only when the slot
  // kept the buffer's offset inside the granule, which swiotlb does only for bits the device's
  // min_align_mask covers (swiotlb_align_offset). A device without one (NVMe sets 4 KiB - 1) gets the
  // IOMMU's alignment refusal, -EINVAL, exactly as the kernel would. The kernel cleans the cache over
  // [bounce - startPad, …) first, which then starts before the slot (below address 0 when the pool
  // sits at the bottom of RAM); dmasim goes straight to the refusing map instead.
  const size = iovaAlignUp(dev, len);
  const err =
    iovaOffset(dev, bounce) === startPad
      ? linkRange(dev, addr - startPad, bounce - startPad, size, dir, attrs)
      : iommuMapNosync(dev, addr - startPad, bounce - startPad, size, dmaInfoToProt(dir, dev.coherent, attrs));
  if (err !== 0) swiotlbTblUnmapSingle(dev, bounce, len, dir, attrs);
  return err;
}

/**
 * iommu_dma_iova_link_swiotlb: the partial head and tail granules go through swiotlb, the aligned middle
 * is linked directly; on failure everything linked so far by this call is undone.
 */
function linkSwiotlb(dev: DmaDevice, state: DmaIovaState, phys: number, offset: number, size: number, dir: DmaDirection, attrs: number): number {
  const g = dev.granule;
  const startPad = iovaOffset(dev, phys);
  const endPad = iovaOffset(dev, phys + size);
  const addr = state.addr + offset;
  let mapped = 0;
  let remaining = size;
  if (startPad !== 0) {
    const len = Math.min(remaining, g - startPad);
    const err = bounceAndLink(dev, addr, phys, len, dir, attrs, startPad);
    if (err !== 0) return err;
    state.useSwiotlb = true;
    mapped += len;
    remaining -= len;
    if (remaining === 0) return 0;
  }
  remaining -= endPad;
  let err = 0;
  if (remaining > 0) {
    err = linkRange(dev, addr + mapped, phys + mapped, remaining, dir, attrs);
    if (err === 0) mapped += remaining;
  }
  if (err === 0 && endPad !== 0) {
    err = bounceAndLink(dev, addr + mapped, phys + mapped, endPad, dir, attrs, 0);
    if (err === 0) state.useSwiotlb = true;
  }
  if (err !== 0 && mapped > 0) unlinkRange(dev, state, offset, mapped, dir, attrs, false);
  return err;
}

/**
 * dma_iova_link: map [phys, phys+size) at `offset` inside the state's IOVA. No IOTLB sync: call
 * dmaIovaSync once after the last link. Returns 0, -EIO (unaligned phys after the first range),
 * -EPERM (a range that would need bouncing with MMIO / REQUIRE_COHERENT), -ENOMEM (bounce failed),
 * -EOPNOTSUPP (no iommu-dma, or REQUIRE_COHERENT on a non-coherent device or a bounced state).
 */
/* eslint-disable @typescript-eslint/no-unnecessary-boolean-literal-compare -- see the comment on dev.bound below */
export function dmaIovaLink(dev: DmaDevice, state: DmaIovaState, phys: number, offset: number, size: number, dir: DmaDirection, attrs: number): number {
  // Fast path, the link of one granule from a granule-aligned buffer by a coherent device, untraced and
  // untracked (what a block or network driver does for every page): nothing can bounce (the range is
  // aligned, so iova_unaligned is false even for an untrusted device), no cache maintenance is due, no
  // WARN can fire and dma-debug has nothing to check or record, so a link is the page-table write and a
  // counter. The tests here, with those the IOMMU's single-granule entry makes (an integer IOVA inside
  // the aperture, on a granule; phys inside the physical address space; a free slot), imply every check
  // of the general path; whatever fails one of them, including the IOMMU's, goes to linkSlow, which
  // gives the precise answer. A tested phys is an aligned integer >= 0 and the prot comes from
  // dma_info_to_prot: what the IOMMU entry trusts.
  //
  // Kept small on purpose: V8 inlines a function into a caller's loop only while the function and what
  // it has itself inlined stay under a bytecode budget, and this one inlines the IOMMU entry and its
  // page-table write. Over the budget, the links of a batch would become calls, about 4 ns each, and
  // whether they did would change from run to run with the order of background compilations.
  const domain = dev.domain;
  // dma_info_to_prot of a coherent device by table, for integer directions only (a string such as
  // "length" must not reach the array); 0 for DMA_NONE and anything else.
  const prot = (dir | 0) === dir ? (COHERENT_PROT[dir] ?? 0) : 0;
  if (
    prot !== 0 &&
    domain !== undefined &&
    size === dev.granule &&
    // `=== true` rather than a bare truthiness test: V8 does not know these fields only hold booleans
    // and would otherwise compile each test as a full ToBoolean (a dozen instructions per link).
    dev.bound === true &&
    dev.coherent === true &&
    Number.isInteger(phys) &&
    phys >= 0 &&
    // Alignment by mask (the granule is a power of two): exact for any integer, as `&` keeps the low
    // 32 bits, and cheaper than a division.
    (phys & (size - 1)) === 0 &&
    offset >= 0 &&
    // Integer attrs made only of the bits this path handles (no MMIO, REQUIRE_COHERENT, PRIVILEGED).
    (attrs & INLINE_LINK_ATTRS) === attrs
  ) {
    const kernel = dev.kernel;
    const trace = kernel.trace;
    if (trace.events.active === false && kernel.iovaTracker.tracking === false && domain.mapGranuleTrusted(state.addr + offset, phys, prot) >= 0) {
      const v = trace.counters.values;
      v[C_IOVA_LINKS] = (v[C_IOVA_LINKS] ?? 0) + 1;
      return 0;
    }
  }
  return linkSlow(dev, state, phys, offset, size, dir, attrs);
}

/* eslint-enable @typescript-eslint/no-unnecessary-boolean-literal-compare */

/**
 * dma_iova_link for everything dmaIovaLink's one-page test does not admit: a link of several granules
 * by a coherent device takes linkFast (the same shortcut with tracing and tracking); anything else the
 * general path.
 */
function linkSlow(dev: DmaDevice, state: DmaIovaState, phys: number, offset: number, size: number, dir: DmaDirection, attrs: number): number {
  const g = dev.granule;
  if (
    g !== 0 &&
    dev.bound &&
    dev.coherent &&
    validIndex(phys) &&
    validIndex(offset) &&
    Number.isInteger(size) &&
    size > 0 &&
    phys + size <= MAX_SAFE &&
    (phys & (g - 1)) === 0 &&
    (size & (g - 1)) === 0 &&
    (dir === DIR_BIDIRECTIONAL || dir === DIR_TO_DEVICE || dir === DIR_FROM_DEVICE) &&
    (attrs | 0) === attrs &&
    (attrs & ~FAST_LINK_ATTRS) === 0
  ) {
    return linkFast(dev, state, phys, offset, size, dir, attrs);
  }
  return dmaIovaLinkGeneral(dev, state, phys, offset, size, dir, attrs);
}

/**
 * dma_iova_link by the general path, whatever the arguments. Internal (not in index.ts): dmaIovaLink
 * takes it for everything its fast path does not admit, and the tests compare the two on the cases the
 * fast path does admit.
 */
export function dmaIovaLinkGeneral(dev: DmaDevice, state: DmaIovaState, phys: number, offset: number, size: number, dir: DmaDirection, attrs: number): number {
  const fn = "dma_iova_link";
  checkDevice(fn, dev);
  checkRange(fn, "phys", phys, size);
  checkSize(fn, "offset", offset);
  checkDir(fn, dir);
  checkAttrs(fn, attrs);
  if (dev.ops !== "iommu") return -Errno.EOPNOTSUPP;
  apiBegin(dev, fn);
  dev.kernel.trace.counters.add(Counter.DmaIovaLinks);
  const ret = doLink(dev, state, phys, offset, size, dir, attrs);
  apiEnd(dev, fn, ret);
  return ret;
}

/** dma_iova_link for the case dmaIovaLink's fast-path test admits. */
function linkFast(dev: DmaDevice, state: DmaIovaState, phys: number, offset: number, size: number, dir: DmaDirection, attrs: number): number {
  const kernel = dev.kernel;
  const trace = kernel.trace;
  const active = trace.events.active;
  if (active) apiBegin(dev, "dma_iova_link");
  const v = trace.counters.values;
  v[C_IOVA_LINKS] = (v[C_IOVA_LINKS] ?? 0) + 1;
  // With dma-debug off the tracker's link check answers true without looking, so it is skipped.
  let ret = 0;
  if (kernel.debug.mode !== "off" && !kernel.iovaTracker.link(state, dev.bdf, state.addr, offset, size)) {
    ret = -EINVAL;
  } else {
    const prot = (COHERENT_PROT[dir] ?? 0) | ((attrs & ATTR_PRIVILEGED) !== 0 ? PRIV_PROT : 0);
    const iova = state.addr + offset;
    // One granule (the common link) through the IOMMU's internal entry point: phys (an aligned safe
    // integer) and prot (from dma_info_to_prot) are what it may trust. Anything it declines, such as an
    // occupied slot or an unaligned state address, goes through iommu_map, which reports the error.
    const domain = dev.domain;
    if (size !== dev.granule || domain === undefined || domain.mapGranuleTrusted(iova, phys, prot) < 0) ret = mapNosync(dev, iova, phys, size, prot);
    if (ret === 0) kernel.iovaTracker.linked(state, state.addr, offset, size);
  }
  if (active) apiEnd(dev, "dma_iova_link", ret);
  return ret;
}

function doLink(dev: DmaDevice, state: DmaIovaState, phys: number, offset: number, size: number, dir: DmaDirection, attrs: number): number {
  const startPad = iovaOffset(dev, phys);
  if (startPad !== 0 && offset > 0) {
    dev.kernel.debug.warnOnce(dev.bdf, "dma_iova_link/unaligned", `dma_iova_link: WARN_ON_ONCE(iova_start_pad && offset > 0): phys 0x${phys.toString(16)} is not granule-aligned at offset ${offset}`);
    return -Errno.EIO;
  }
  if (state.useSwiotlb && (attrs & DMA_ATTR_REQUIRE_COHERENT) !== 0) {
    dev.kernel.debug.warnOnce(dev.bdf, "dma_iova_link/coherent", "dma_iova_link: DMA_ATTR_REQUIRE_COHERENT on a state that already bounced through swiotlb");
    return -Errno.EOPNOTSUPP;
  }
  if (!dev.coherent && (attrs & DMA_ATTR_REQUIRE_COHERENT) !== 0) return -Errno.EOPNOTSUPP;
  if (!dev.kernel.iovaTracker.link(state, dev.bdf, state.addr, offset, size)) return -Errno.EINVAL;
  let ret: number;
  if (devUseSwiotlb(dev, size, dir) && iovaUnaligned(dev, phys, size)) {
    ret = (attrs & (DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT)) !== 0 ? -Errno.EPERM : linkSwiotlb(dev, state, phys, offset, size, dir, attrs);
  } else {
    ret = linkRange(dev, state.addr + offset - startPad, phys - startPad, iovaAlignUp(dev, size + startPad), dir, attrs);
  }
  if (ret === 0) dev.kernel.iovaTracker.linked(state, state.addr, offset, size);
  return ret;
}

/** dma_iova_sync: one iotlb_sync_map over the granules of [offset, offset+size). */
export function dmaIovaSync(dev: DmaDevice, state: DmaIovaState, offset: number, size: number): number {
  const fn = "dma_iova_sync";
  if (!validBoundRange(dev, offset, size)) {
    checkDevice(fn, dev);
    checkSize(fn, "offset", offset);
    checkSize(fn, "size", size);
  }
  if (dev.ops !== "iommu") return -Errno.EOPNOTSUPP;
  if (!dev.kernel.iovaTracker.synced(state, dev.bdf, state.addr, offset, size)) return 0;
  apiBegin(dev, fn);
  dev.kernel.trace.counters.add(Counter.DmaIovaSyncs);
  const addr = state.addr + offset;
  const pad = iovaOffset(dev, addr);
  const len = iovaAlignUp(dev, size + pad);
  // An empty sync is a no-op for every iotlb_sync_map implementation; the IOMMU model refuses size 0.
  if (len > 0) domainOf(dev).iotlbSyncMap(addr - pad, len);
  apiEnd(dev, fn, 0);
  return 0;
}

/**
 * iommu_dma_iova_unlink_range_slow: granule by granule, sync for the CPU and release bounce slots.
 * Needed when the state bounced, or for non-coherent devices.
 */
function unlinkSlow(dev: DmaDevice, addr: number, size: number, dir: DmaDirection, attrs: number): void {
  const domain = domainOf(dev);
  const g = dev.granule;
  let pad = iovaOffset(dev, addr);
  const end = addr + size;
  while (addr < end) {
    const phys = domain.iovaToPhys(addr);
    if (phys === undefined) {
      dev.kernel.debug.warnOnce(dev.bdf, "iova_unlink_slow", `WARN_ON(!phys): IOVA 0x${addr.toString(16)} translates to nothing during unlink`);
      return;
    }
    const len = Math.min(end - addr, g - pad);
    if (!dev.coherent && (attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO)) === 0) archSyncDmaForCpu(dev, phys, len, dir);
    if (isSwiotlbBuffer(dev, phys)) swiotlbTblUnmapSingle(dev, phys, len, dir, attrs);
    addr += len;
    pad = 0;
  }
}

/** __iommu_dma_iova_unlink. */
function unlinkRange(dev: DmaDevice, state: DmaIovaState, offset: number, size: number, dir: DmaDirection, attrs: number, freeIova: boolean): void {
  const addr = state.addr + offset;
  if (state.useSwiotlb || (!dev.coherent && (attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO)) === 0)) {
    unlinkSlow(dev, addr, size, dir, attrs);
  }
  // dma_iova_unlink always invalidates synchronously: its IOVA stays allocated and may be relinked at
  // once, so it cannot wait for the flush queue. Only destroy (which frees the IOVA) may queue.
  iommuDmaUnmapRange(dev, addr, size, freeIova);
  dev.kernel.iovaTracker.unlinked(state, state.addr, offset, size);
}

/** dma_iova_unlink: unmap [offset, offset+size) and invalidate the IOTLB now; the IOVA stays allocated. */
export function dmaIovaUnlink(dev: DmaDevice, state: DmaIovaState, offset: number, size: number, dir: DmaDirection, attrs: number): void {
  const fn = "dma_iova_unlink";
  checkDevice(fn, dev);
  checkSize(fn, "offset", offset);
  checkSize(fn, "size", size);
  checkDir(fn, dir);
  checkAttrs(fn, attrs);
  if (dev.ops !== "iommu" || size === 0) return;
  if (!dev.kernel.iovaTracker.unlink(state, dev.bdf, state.addr, offset, size)) return;
  apiBegin(dev, fn);
  dev.kernel.trace.counters.add(Counter.DmaIovaUnlinks);
  unlinkRange(dev, state, offset, size, dir, attrs, false);
  apiEnd(dev, fn, 0);
}

/**
 * dma_iova_destroy: unlink [0, mappedLen) and free the IOVA. Lazy mode defers the IOTLB invalidation and
 * the IOVA release to the flush queue; strict mode invalidates before returning. mappedLen 0 only frees.
 */
export function dmaIovaDestroy(dev: DmaDevice, state: DmaIovaState, mappedLen: number, dir: DmaDirection, attrs: number): void {
  const fn = "dma_iova_destroy";
  if (!(dev.bound && validIndex(mappedLen) && validDir(dir) && validAttrs(attrs))) {
    checkDevice(fn, dev);
    checkSize(fn, "mappedLen", mappedLen);
    checkDir(fn, dir);
    checkAttrs(fn, attrs);
  }
  if (dev.ops !== "iommu" || !dmaUseIova(state)) return;
  const tracker = dev.kernel.iovaTracker;
  // Checked first, so a refused destroy (debug "throw") or a second one changes nothing at all.
  if (!tracker.destroy(state, dev.bdf, state.addr, mappedLen)) return;
  apiBegin(dev, fn);
  dev.kernel.trace.counters.add(Counter.DmaIovaDestroys);
  if (mappedLen === 0) {
    const pad = iovaOffset(dev, state.addr);
    iommuDmaFreeIova(cookieOf(dev), state.addr - pad, iovaAlignUp(dev, state.size + pad), dev.kernel.cpu);
  } else {
    unlinkRange(dev, state, 0, mappedLen, dir, attrs, true);
  }
  tracker.released(state);
  apiEnd(dev, fn, 0);
}
