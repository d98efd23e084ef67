import { Counter } from "./counters.js";
import {
  archSyncDmaForCpu,
  archSyncDmaForDevice,
  devUseSwiotlb,
  isSwiotlbBuffer,
  swiotlbTblUnmapSingle,
} from "./bounce.js";
import { DMA_ATTR_MMIO, DMA_ATTR_REQUIRE_COHERENT, DMA_ATTR_SKIP_CPU_SYNC, Errno } from "./constants.js";
import type { DmaAddr, DmaDirection } from "./constants.js";
import type { DmaDevice } from "./device.js";
import {
  allocIova,
  freeIova,
  dmaInfoToProt,
  domainOf,
  iommuDmaMapSwiotlb,
  iommuDmaUnmapRange,
  iommuMapNosync,
  iovaAlignUp,
  iovaOffset,
  iovaUnaligned,
} from "./iommu-dma.js";
import { apiBegin, apiEnd, checkDevice } from "./api-trace.js";
import { checkIovaState, dmaUseIova, isIovaState } from "./iova-state.js";
import type { DmaIovaState } from "./iova-state.js";
import { dmaIovaLinkAlignedGranuleNoBounceCheck, dmaIovaLinkGranuleNoChecks } from "./two-step-fast.js";
import { checkAttrs, checkDir, checkRange, checkSize, isAttrs, isBoundDevice, isDir, isIndex, isRange } from "./validate.js";
import type { Iova } from "@dmasim/iommu";
import type { PhysAddr } from "@dmasim/memory";

// The two-step DMA API (dma_iova_* in drivers/iommu/dma-iommu.c): one function per kernel function, each
// checking every argument before it changes anything, then following the kernel's flow. dma-debug's
// findings (dmasim tracks the two-step API, upstream does not) are checked before any page-table entry
// is written or cleared, so a refused call ("throw" mode) changes nothing. The one fast path, a
// one-granule link, lives behind the seam in two-step-fast.ts.

export { DMA_IOVA_STATE_BYTES, DmaIovaState, dmaIovaSize, dmaUseIova } from "./iova-state.js";

/**
 * dmasim's dma-debug check of a call on a state that holds no IOVA (dma_iova_try_alloc never ran on it,
 * or failed): upstream would go on at IOVA 0 + offset. True when the call must not proceed (reported in
 * "collect" mode; "throw" mode has thrown).
 */
function iovaNotAllocated(dev: DmaDevice, state: DmaIovaState, fn: string): boolean {
  const debug = dev.kernel.debug;
  if (dmaUseIova(state) || !debug.enabled) return false;
  debug.report("iova-state-not-allocated", dev.bdf, `${fn} on a dma_iova_state that holds no IOVA: dma_iova_try_alloc was not called on it, or it failed`);
  return true;
}

/**
 * dma_iova_try_alloc: reserve IOVA space for `size` bytes whose first byte sits at `phys`'s offset in a
 * granule. Returns false (state zeroed) when the device does not use iommu-dma, on a zero size, or when
 * the IOVA space under the device's mask is exhausted.
 */
export function dmaIovaTryAlloc(dev: DmaDevice, state: DmaIovaState, phys: PhysAddr, size: number): boolean {
  const fn = "dma_iova_try_alloc";
  // One combined test for the usual valid call; the precise checks, in order, only when it fails (and
  // out of line, so that the entry's bytecode stays small for V8's inlining budget: see the README).
  if (!(isBoundDevice(dev) && isIovaState(state) && !Object.isFrozen(state) && isRange(phys, size))) checkTryAllocArgs(dev, state, phys, size);
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
  const addr = allocIova(dev, iovaAlignUp(dev, size + off), dev.dmaMask, "two-step");
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

/** dma_iova_try_alloc's precise checks, in order; throws for the first that fails. */
function checkTryAllocArgs(dev: DmaDevice, state: DmaIovaState, phys: number, size: number): void {
  const fn = "dma_iova_try_alloc";
  checkDevice(fn, dev);
  checkIovaState(fn, state, true);
  checkRange(fn, "phys", phys, size);
}

/** dma_iova_sync's precise checks, in order; throws for the first that fails. */
function checkOffsetSizeArgs(fn: string, dev: DmaDevice, state: DmaIovaState, offset: number, size: number): void {
  checkDevice(fn, dev);
  checkIovaState(fn, state);
  checkSize(fn, "offset", offset);
  checkSize(fn, "size", size);
}

/** dma_iova_destroy's precise checks, in order. */
function checkDestroyArgs(dev: DmaDevice, state: DmaIovaState, mappedLen: number, dir: DmaDirection, attrs: number): void {
  const fn = "dma_iova_destroy";
  checkDevice(fn, dev);
  checkIovaState(fn, state);
  checkSize(fn, "mappedLen", mappedLen);
  checkDir(fn, dir);
  checkAttrs(fn, attrs);
}

/** dma_iova_free: give the IOVA back at once (no flush queue); every link must be undone already. */
export function dmaIovaFree(dev: DmaDevice, state: DmaIovaState): void {
  const fn = "dma_iova_free";
  checkDevice(fn, dev);
  checkIovaState(fn, state);
  if (dev.ops !== "iommu" || !dmaUseIova(state)) return;
  if (!dev.kernel.iovaTracker.free(state, dev.bdf)) return;
  apiBegin(dev, fn);
  iovaFree(dev, state);
  dev.kernel.iovaTracker.released(state);
  apiEnd(dev, fn, 0);
}

/** The IOVA of the whole state back to the allocator (dma_iova_free's iommu_dma_free_iova). */
function iovaFree(dev: DmaDevice, state: DmaIovaState): void {
  const pad = iovaOffset(dev, state.addr);
  freeIova(dev, state.addr - pad, iovaAlignUp(dev, state.size + pad), "two-step");
}

/** __dma_iova_link: CPU cache maintenance for non-coherent devices, then PTE writes with no IOTLB sync (exported for the seam's equivalence test, not from index.ts). */
export function __dmaIovaLink(dev: DmaDevice, addr: number, phys: number, size: number, dir: DmaDirection, attrs: number): number {
  // iommu_map of nothing succeeds without touching the table (its loop never runs); the IOMMU model
  // refuses an empty range as bad input, so an empty link stops here.
  if (size === 0) return 0;
  if (!dev.coherent && (attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO)) === 0) archSyncDmaForDevice(dev, phys, size, dir);
  return iommuMapNosync(dev, addr, phys, size, dmaInfoToProt(dir, dev.coherent, attrs));
}

/** iommu_dma_iova_bounce_and_link: bounce a partial granule and link the slot's granule. */
function iommuDmaIovaBounceAndLink(dev: DmaDevice, addr: number, phys: number, len: number, dir: DmaDirection, attrs: number, startPad: number): number {
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
      ? __dmaIovaLink(dev, addr - startPad, bounce - startPad, size, dir, attrs)
      : iommuMapNosync(dev, addr - startPad, bounce - startPad, size, dmaInfoToProt(dir, dev.coherent, attrs));
  if (err !== 0) swiotlbTblUnmapSingle(dev, bounce, len, dir, attrs);
  return err;
}

/**
 * iommu_dma_iova_link_swiotlb: the partial head and tail granules go through swiotlb, the aligned middle
 * is linked directly; on failure everything linked so far by this call is undone.
 */
function iommuDmaIovaLinkSwiotlb(dev: DmaDevice, state: DmaIovaState, phys: number, offset: number, size: number, dir: DmaDirection, attrs: number): number {
  const g = dev.granule;
  const startPad = iovaOffset(dev, phys);
  const endPad = iovaOffset(dev, phys + size);
  const addr = state.addr + offset;
  let mapped = 0;
  let remaining = size;
  if (startPad !== 0) {
    const len = Math.min(remaining, g - startPad);
    const err = iommuDmaIovaBounceAndLink(dev, addr, phys, len, dir, attrs, startPad);
    if (err !== 0) return err;
    state.useSwiotlb = true;
    mapped += len;
    remaining -= len;
    if (remaining === 0) return 0;
  }
  remaining -= endPad;
  let err = 0;
  if (remaining > 0) {
    err = __dmaIovaLink(dev, addr + mapped, phys + mapped, remaining, dir, attrs);
    if (err === 0) mapped += remaining;
  }
  if (err === 0 && endPad !== 0) {
    err = iommuDmaIovaBounceAndLink(dev, addr + mapped, phys + mapped, endPad, dir, attrs, 0);
    if (err === 0) state.useSwiotlb = true;
  }
  if (err !== 0 && mapped > 0) __iommuDmaIovaUnlink(dev, state, offset, mapped, dir, attrs, false);
  return err;
}

/**
 * dma_iova_link: map [phys, phys+size) at `offset` inside the state's IOVA. No IOTLB sync: call
 * dmaIovaSync once after the last link. Returns 0, -EIO (unaligned phys after the first range),
 * -EPERM (a range that would need bouncing with MMIO / REQUIRE_COHERENT), -ENOMEM (bounce failed),
 * -EOPNOTSUPP (no iommu-dma, or REQUIRE_COHERENT on a non-coherent device or a bounced state).
 */
export function dmaIovaLink(dev: DmaDevice, state: DmaIovaState, phys: PhysAddr, offset: number, size: number, dir: DmaDirection, attrs: number): number {
  // The seam: one granule of a coherent device's aligned buffer, nobody listening, is linked by
  // two-step-fast.ts without the checks below (none can fail for it); everything else runs them. The fast
  // path does not test that dev and state are objects: a TypeError from it means nothing changed and the
  // checked path is to name the bad argument (a try costs nothing while nothing throws).
  try {
    if (dmaIovaLinkGranuleNoChecks(dev, state, phys, offset, size, dir, attrs)) return 0;
  } catch (e) {
    if (!(e instanceof TypeError)) throw e;
  }
  return dmaIovaLinkChecked(dev, state, phys, offset, size, dir, attrs);
}

/**
 * dma_iova_link with every check, whatever the arguments: what dmaIovaLink runs for everything its fast
 * path declines. Exported for the equivalence test of that fast path, not from index.ts.
 */
export function dmaIovaLinkChecked(dev: DmaDevice, state: DmaIovaState, phys: number, offset: number, size: number, dir: DmaDirection, attrs: number): number {
  const fn = "dma_iova_link";
  // One combined test for the usual valid call; the precise checks, in order, only when it fails.
  if (!(isBoundDevice(dev) && isIovaState(state) && isRange(phys, size) && isIndex(offset) && isDir(dir) && isAttrs(attrs))) {
    checkDevice(fn, dev);
    checkIovaState(fn, state);
    checkRange(fn, "phys", phys, size);
    checkSize(fn, "offset", offset);
    checkDir(fn, dir);
    checkAttrs(fn, attrs);
  }
  if (dev.ops !== "iommu") return -Errno.EOPNOTSUPP;
  const trace = dev.kernel.trace;
  const active = trace.events.active;
  if (active) apiBegin(dev, fn);
  trace.counters.add(Counter.DmaIovaLinks);
  const ret = iommuDmaIovaLink(dev, state, phys, offset, size, dir, attrs);
  if (active) apiEnd(dev, fn, ret);
  return ret;
}

/** The body of dma_iova_link, in the kernel's order, with dmasim's dma-debug checks before the first write. */
function iommuDmaIovaLink(dev: DmaDevice, state: DmaIovaState, phys: number, offset: number, size: number, dir: DmaDirection, attrs: number): number {
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
  if (iovaNotAllocated(dev, state, "dma_iova_link")) return -Errno.EINVAL;
  if (!dev.kernel.iovaTracker.link(state, dev.bdf, state.addr, offset, size)) return -Errno.EINVAL;
  // The seam (two-step-fast.ts): one aligned granule of a coherent device is __dma_iova_link's PTE write
  // alone; it answers 1 for anything else, which takes the kernel's path below.
  let ret = dmaIovaLinkAlignedGranuleNoBounceCheck(dev, state.addr + offset, phys, size, dir, attrs);
  if (ret !== 1) {
    // Linked, or refused by the IOMMU.
  } else if (devUseSwiotlb(dev, size, dir) && iovaUnaligned(dev, phys, size)) {
    ret = (attrs & (DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT)) !== 0 ? -Errno.EPERM : iommuDmaIovaLinkSwiotlb(dev, state, phys, offset, size, dir, attrs);
  } else {
    ret = __dmaIovaLink(dev, state.addr + offset - startPad, phys - startPad, iovaAlignUp(dev, size + startPad), dir, attrs);
  }
  if (ret === 0) dev.kernel.iovaTracker.linked(state, state.addr, offset, size);
  return ret;
}

/** dma_iova_sync: one iotlb_sync_map over the granules of [offset, offset+size). */
export function dmaIovaSync(dev: DmaDevice, state: DmaIovaState, offset: number, size: number): number {
  const fn = "dma_iova_sync";
  if (!(isBoundDevice(dev) && isIovaState(state) && isIndex(offset) && isIndex(size))) checkOffsetSizeArgs(fn, dev, state, offset, size);
  if (dev.ops !== "iommu") return -Errno.EOPNOTSUPP;
  if (iovaNotAllocated(dev, state, fn)) return 0;
  if (!dev.kernel.iovaTracker.synced(state, dev.bdf, state.addr, offset, size)) return 0;
  apiBegin(dev, fn);
  dev.kernel.trace.counters.add(Counter.DmaIovaSyncs);
  const addr = state.addr + offset;
  const pad = iovaOffset(dev, addr);
  const len = iovaAlignUp(dev, size + pad);
  // An empty sync is a no-op for every iotlb_sync_map implementation; the IOMMU model refuses size 0.
  if (len > 0) domainOf(dev).iotlbSyncMap((addr - pad) as Iova, len);
  apiEnd(dev, fn, 0);
  return 0;
}

/**
 * iommu_dma_iova_unlink_range_slow: granule by granule, sync for the CPU and release bounce slots.
 * Needed when the state bounced, or for non-coherent devices.
 */
function iommuDmaIovaUnlinkRangeSlow(dev: DmaDevice, addr: number, size: number, dir: DmaDirection, attrs: number): void {
  const domain = domainOf(dev);
  const g = dev.granule;
  let pad = iovaOffset(dev, addr);
  const end = addr + size;
  while (addr < end) {
    const phys = domain.iovaToPhys(addr as Iova);
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

/**
 * __iommu_dma_iova_unlink: the slow per-granule pass when something bounced or needs cache maintenance,
 * then one unmap of the range; the IOTLB is invalidated now unless the IOVA is freed through the flush
 * queue (iommuDmaUnmapRange).
 */
function __iommuDmaIovaUnlink(dev: DmaDevice, state: DmaIovaState, offset: number, size: number, dir: DmaDirection, attrs: number, freeIova: boolean): void {
  const addr = state.addr + offset;
  if (state.useSwiotlb || (!dev.coherent && (attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO)) === 0)) {
    iommuDmaIovaUnlinkRangeSlow(dev, addr, size, dir, attrs);
  }
  // dma_iova_unlink always invalidates synchronously: its IOVA stays allocated and may be relinked at
  // once, so it cannot wait for the flush queue. Only destroy (which frees the IOVA) may queue.
  iommuDmaUnmapRange(dev, addr, size, freeIova, "two-step");
  dev.kernel.iovaTracker.unlinked(state, state.addr, offset, size);
}

/** dma_iova_unlink: unmap [offset, offset+size) and invalidate the IOTLB now; the IOVA stays allocated. */
export function dmaIovaUnlink(dev: DmaDevice, state: DmaIovaState, offset: number, size: number, dir: DmaDirection, attrs: number): void {
  const fn = "dma_iova_unlink";
  checkDevice(fn, dev);
  checkIovaState(fn, state);
  checkSize(fn, "offset", offset);
  checkSize(fn, "size", size);
  checkDir(fn, dir);
  checkAttrs(fn, attrs);
  if (dev.ops !== "iommu" || size === 0) return;
  if (iovaNotAllocated(dev, state, fn)) return;
  if (!dev.kernel.iovaTracker.unlink(state, dev.bdf, state.addr, offset, size)) return;
  apiBegin(dev, fn);
  dev.kernel.trace.counters.add(Counter.DmaIovaUnlinks);
  __iommuDmaIovaUnlink(dev, state, offset, size, dir, attrs, false);
  apiEnd(dev, fn, 0);
}

/**
 * dma_iova_destroy: unlink [0, mappedLen) and free the IOVA. Lazy mode defers the IOTLB invalidation and
 * the IOVA release to the flush queue; strict mode invalidates before returning. mappedLen 0 only frees.
 */
export function dmaIovaDestroy(dev: DmaDevice, state: DmaIovaState, mappedLen: number, dir: DmaDirection, attrs: number): void {
  const fn = "dma_iova_destroy";
  if (!(isBoundDevice(dev) && isIovaState(state) && isIndex(mappedLen) && isDir(dir) && isAttrs(attrs))) checkDestroyArgs(dev, state, mappedLen, dir, attrs);
  if (dev.ops !== "iommu" || !dmaUseIova(state)) return;
  const tracker = dev.kernel.iovaTracker;
  // Checked first, so a refused destroy (debug "throw") or a second one changes nothing at all.
  if (!tracker.destroy(state, dev.bdf, state.addr, mappedLen)) return;
  apiBegin(dev, fn);
  dev.kernel.trace.counters.add(Counter.DmaIovaDestroys);
  if (mappedLen === 0) iovaFree(dev, state);
  else __iommuDmaIovaUnlink(dev, state, 0, mappedLen, dir, attrs, true);
  tracker.released(state);
  apiEnd(dev, fn, 0);
}
