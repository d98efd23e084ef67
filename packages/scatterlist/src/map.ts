import { Counter } from "@dmasim/dma";
import { DMA_ATTR_ALL, DMA_ATTR_REQUIRE_COHERENT, DmaDirection, Errno } from "@dmasim/dma";
import { devUseSwiotlb, dmaApiSlice } from "@dmasim/dma/internal";
import type { DmaAddr, DmaDevice, DmaIovaState } from "@dmasim/dma";
import type { Iova } from "@dmasim/iommu";
import { classifyEntries } from "./classify.js";
import { debugAddSg, debugCheckMapSg, debugFindBoundaryCrossings, debugUnmapSg } from "./debug.js";
import { checkSgDevice, checkSgTable } from "./check.js";
import { ScatterlistBusyError, ScatterlistError } from "./errors.js";
import { sgLayout } from "./layout.js";
import { mapSgClassic, unmapSgClassic } from "./paths/classic.js";
import { mapSgPerSegment, unmapSgPerSegment } from "./paths/per-segment.js";
import { mapSgTwoStep, unmapSgTwoStep } from "./paths/two-step.js";
import type { SgInteriorPolicy } from "./paths/two-step.js";
import { acquireScratch, releaseScratch } from "./scratch.js";
import type { SgScratch } from "./scratch.js";
import { sgClearDma } from "./sg-table.js";
import type { SgMapPath, SgMapping, SgTable } from "./sg-table.js";
import { syncEntriesForCpu, syncEntriesForDevice } from "./util.js";

/** Which iommu-dma implementation of dma_map_sg to use (other devices ignore it). */
export interface SgMapOptions {
  /** "two-step" (default): built on dma_iova_*; "classic": upstream iommu_dma_map_sg. */
  readonly impl?: "two-step" | "classic";
  /** Two-step only: how unaligned interior entries are placed (see SgInteriorPolicy). */
  readonly interior?: SgInteriorPolicy;
}

const NO_STATES: readonly DmaIovaState[] = [];
const NO_LENS: readonly number[] = [];

function checkArgs(fn: string, dev: DmaDevice, table: SgTable, nents: number, dir: number, attrs: number): void {
  checkSgDevice(fn, dev);
  checkSgTable(fn, table);
  if (!Number.isSafeInteger(nents) || nents < 1 || nents > table.origNents) {
    throw new ScatterlistError("EINVAL", fn, "nents", nents, `1 to the table's ${table.origNents} entries`);
  }
  if (dir !== DmaDirection.BIDIRECTIONAL && dir !== DmaDirection.TO_DEVICE && dir !== DmaDirection.FROM_DEVICE) {
    throw new ScatterlistError("EINVAL", fn, "dir", dir, "DMA_BIDIRECTIONAL (0), DMA_TO_DEVICE (1) or DMA_FROM_DEVICE (2)");
  }
  // Bit operations see only the low 32 bits: a word above them carries unknown bits whatever `&` says.
  if (!Number.isInteger(attrs) || attrs < 0 || attrs > 0xffffffff || (attrs & ~DMA_ATTR_ALL) !== 0) throw new ScatterlistError("EINVAL", fn, "attrs", attrs, "a combination of DMA_ATTR_* bits");
}

function checkOptions(fn: string, options: SgMapOptions): void {
  // Checked as unknown values: JavaScript callers (and JSON configs) can pass anything.
  if (typeof options !== "object" || (options as unknown) === null) throw new ScatterlistError("EINVAL", fn, "options", options, "an object { impl?, interior? }");
  const impl: unknown = options.impl;
  const interior: unknown = options.interior;
  if (impl !== undefined && impl !== "two-step" && impl !== "classic") {
    throw new ScatterlistError("EINVAL", fn, "options.impl", impl, '"two-step" or "classic"');
  }
  if (interior !== undefined && interior !== "widen" && interior !== "split") {
    throw new ScatterlistError("EINVAL", fn, "options.interior", interior, '"widen" or "split"');
  }
}

/**
 * __dma_map_sg_attrs (kernel/dma/mapping.c): validates, runs dma-debug's pre-checks, dispatches to
 * dma-direct, the per-segment swiotlb path or one of the iommu-dma implementations, and records the
 * mapping on the table. Returns the number of DMA segments or a negative errno; on error nothing is mapped.
 */
function mapSgAttrs(fn: string, dev: DmaDevice, table: SgTable, nents: number, dir: DmaDirection, attrs: number, options: SgMapOptions): number {
  checkArgs(fn, dev, table, nents, dir, attrs);
  checkOptions(fn, options);
  if (table.mapping !== undefined) {
    throw new ScatterlistBusyError(fn, `the table is already mapped for ${table.mapping.dev.bdf}: unmap it first`);
  }
  for (let i = 0; i < nents; i++) {
    if ((table.length[i] ?? 0) === 0) throw new ScatterlistError("EINVAL", fn, `entry ${i} length`, 0, "entries of at least one byte");
  }
  const kernel = dev.kernel;
  // __dma_map_sg_attrs (kernel/dma/mapping.c): a non-coherent device cannot honour REQUIRE_COHERENT; refused
  // before dma-debug or any path sees the list (dma_map_sg_attrs turns it into 0).
  if ((attrs & DMA_ATTR_REQUIRE_COHERENT) !== 0 && !dev.coherent) {
    kernel.trace.counters.add(Counter.DmaMapCalls);
    kernel.trace.counters.add(Counter.DmaMappingErrors);
    return -Errno.EOPNOTSUPP;
  }
  debugCheckMapSg(dev, table, nents, dir, attrs);
  kernel.trace.counters.add(Counter.DmaMapCalls);
  const scratch = acquireScratch(kernel, nents);
  try {
    return mapSgWith(dev, table, nents, dir, attrs, options, scratch);
  } finally {
    releaseScratch(scratch);
  }
}

function mapSgWith(dev: DmaDevice, table: SgTable, nents: number, dir: DmaDirection, attrs: number, options: SgMapOptions, scratch: SgScratch): number {
  const kernel = dev.kernel;
  const cls = classifyEntries(dev, table, nents, scratch);
  if (cls === undefined) {
    kernel.trace.counters.add(Counter.DmaMappingErrors);
    return -Errno.EREMOTEIO;
  }
  let path: SgMapPath;
  let ret: number;
  let states: readonly DmaIovaState[] = NO_STATES;
  let stateLens: readonly number[] = NO_LENS;
  let iova = 0;
  let iovaLen = 0;
  if (dev.ops === "direct") {
    path = "direct";
    ret = mapSgPerSegment(dev, table, nents, cls, dir, attrs, false);
  } else if (useSgSwiotlb(dev, table, nents, dir)) {
    path = "swiotlb";
    ret = mapSgPerSegment(dev, table, nents, cls, dir, attrs, true);
  } else {
    syncEntriesForDevice(dev, table, nents, cls.anyP2p ? cls.kinds : undefined, dir, attrs);
    const lay = sgLayout(table, nents, cls, dev.granule, dev.segBoundaryMask, dev.maxSegmentSize, scratch);
    if (options.impl === "classic") {
      path = "classic";
      const r = mapSgClassic(dev, table, nents, cls, lay, dir, attrs);
      ret = r.ret;
      iova = r.iova;
      iovaLen = lay.iovaLen;
    } else {
      path = "two-step";
      const r = mapSgTwoStep(dev, table, cls, lay, dir, attrs, options.interior ?? "widen", scratch);
      ret = r.ret;
      states = r.states;
      stateLens = r.stateLens;
    }
    if (ret > 0 && ret < nents) {
      table.dmaAddress.fill(-1, ret, nents);
      table.dmaLength.fill(0, ret, nents);
    }
  }
  if (ret < 0) {
    sgClearDma(table);
    kernel.trace.counters.add(Counter.DmaMappingErrors);
    return ret;
  }
  // Built field by field: a spread here cost more than the layout of a 256-entry list.
  const record: SgMapping =
    path === "two-step"
      ? { path, dev, nents, mappedEnts: ret, dir, states, stateLens }
      : path === "classic"
        ? { path, dev, nents, mappedEnts: ret, dir, iova: iova as Iova, iovaLen }
        : { path, dev, nents, mappedEnts: ret, dir };
  table.mapping = record;
  const crossings = debugFindBoundaryCrossings(dev, table, ret);
  if (crossings.length > 0 && kernel.debug.mode === "throw") {
    // Undo first, so the thrown report leaves nothing mapped.
    unmapSgRecord(dev, table, record, 0);
    table.mapping = undefined;
    sgClearDma(table);
  } else {
    debugAddSg(dev, table, nents, ret, dir, attrs);
  }
  for (const message of crossings) kernel.debug.report("sg-segment-crosses-boundary", dev.bdf, message);
  return ret;
}

/** dev_use_sg_swiotlb: untrusted devices, or any entry that the kmalloc rule says must bounce. */
function useSgSwiotlb(dev: DmaDevice, table: SgTable, nents: number, dir: DmaDirection): boolean {
  if (dev.untrusted) return devUseSwiotlb(dev, 1, dir);
  // dma_kmalloc_safe(): only non-coherent devices reading back into kmalloc buffers can need a bounce,
  // so the per-entry length test runs only then.
  if (!dev.kernel.kmallocBounce || dev.coherent || dir === DmaDirection.TO_DEVICE) return false;
  for (let i = 0; i < nents; i++) if (devUseSwiotlb(dev, table.length[i] ?? 0, dir)) return true;
  return false;
}

function unmapSgRecord(dev: DmaDevice, table: SgTable, m: SgMapping, attrs: number): void {
  switch (m.path) {
    case "direct":
    case "swiotlb":
      unmapSgPerSegment(dev, table, m.nents, m.dir, attrs);
      return;
    case "classic":
      syncEntriesForCpu(dev, table, m.nents, m.dir, attrs);
      unmapSgClassic(dev, table, m.mappedEnts);
      return;
    case "two-step":
      syncEntriesForCpu(dev, table, m.nents, m.dir, attrs);
      unmapSgTwoStep(dev, table, m.states, m.stateLens, m.dir, attrs);
      return;
  }
}

/**
 * dma_map_sg_attrs: maps the first `nents` entries for `dev`. Returns the number of DMA segments (maybe
 * fewer than `nents`: read them with sgDmaAddress / sgDmaLen), or 0 on any failure.
 */
export function dmaMapSg(dev: DmaDevice, table: SgTable, nents: number, dir: DmaDirection, attrs = 0, options: SgMapOptions = {}): number {
  checkSgDevice("dma_map_sg_attrs", dev);
  return dmaApiSlice(dev, "dma_map_sg_attrs", () => {
    const ret = mapSgAttrs("dma_map_sg_attrs", dev, table, nents, dir, attrs, options);
    return ret < 0 ? 0 : ret;
  });
}

/**
 * dma_map_sgtable: maps every entry (orig_nents) and sets `table.nents` to the number of DMA segments.
 * Returns 0, or -EINVAL, -ENOMEM, -EIO, -EREMOTEIO (P2P memory the device cannot reach) or -EOPNOTSUPP
 * (DMA_ATTR_REQUIRE_COHERENT on a device that is not DMA-coherent).
 */
export function dmaMapSgtable(dev: DmaDevice, table: SgTable, dir: DmaDirection, attrs = 0, options: SgMapOptions = {}): number {
  const fn = "dma_map_sgtable";
  checkSgDevice(fn, dev);
  checkSgTable(fn, table);
  return dmaApiSlice(dev, fn, () => {
    const ret = mapSgAttrs(fn, dev, table, table.origNents, dir, attrs, options);
    if (ret < 0) return ret;
    table.nents = ret;
    return 0;
  });
}

function unmapSg(fn: string, dev: DmaDevice, table: SgTable, nents: number, dir: DmaDirection, attrs: number): void {
  checkArgs(fn, dev, table, nents, dir, attrs);
  const m = table.mapping;
  if (m === undefined) {
    // Nothing to undo; dma-debug reports an unmap of memory that was never mapped.
    dev.kernel.debug.unmap(dev.bdf, { type: "scatter-gather", dmaAddr: (table.dmaAddress[0] ?? 0) as DmaAddr, size: table.dmaLength[0] ?? 0, dir, sgCount: nents });
    return;
  }
  if (m.dev !== dev) throw new ScatterlistError("EINVAL", fn, "dev", dev.bdf, `the device the table was mapped for (${m.dev.bdf})`);
  debugUnmapSg(dev, table, nents, m.nents, m.mappedEnts, dir);
  dev.kernel.trace.counters.add(Counter.DmaUnmapCalls);
  // The mapping that was made is undone whatever `nents` or `dir` said (a mismatch has been reported).
  unmapSgRecord(dev, table, m, attrs);
  table.mapping = undefined;
  sgClearDma(table);
}

/** dma_unmap_sg_attrs: `nents` must be what was passed to dmaMapSg (not what it returned). */
export function dmaUnmapSg(dev: DmaDevice, table: SgTable, nents: number, dir: DmaDirection, attrs = 0): void {
  checkSgDevice("dma_unmap_sg_attrs", dev);
  dmaApiSlice(dev, "dma_unmap_sg_attrs", () => {
    unmapSg("dma_unmap_sg_attrs", dev, table, nents, dir, attrs);
    return undefined;
  });
}

/** dma_unmap_sgtable. */
export function dmaUnmapSgtable(dev: DmaDevice, table: SgTable, dir: DmaDirection, attrs = 0): void {
  const fn = "dma_unmap_sgtable";
  checkSgDevice(fn, dev);
  checkSgTable(fn, table);
  dmaApiSlice(dev, fn, () => {
    unmapSg("dma_unmap_sgtable", dev, table, table.origNents, dir, attrs);
    return undefined;
  });
}
