import { Counter } from "@dmasim/dma";
import { DMA_ATTR_MMIO, DMA_ATTR_SKIP_CPU_SYNC, DMA_IOVA_STATE_BYTES, DmaIovaState, Errno, dmaIovaDestroy, dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc } from "@dmasim/dma";
import type { DmaDevice, DmaDirection } from "@dmasim/dma";
import { EntryKind } from "../classify.js";
import type { Classified } from "../classify.js";
import { SgDmaFlag } from "../constants.js";
import type { SgLayout } from "../layout.js";
import type { SgScratch } from "../scratch.js";
import type { SgTable } from "../sg-table.js";
import { modPow2 } from "../util.js";
import { unsafePhysAddr } from "@dmasim/memory";
import type { PhysAddr } from "@dmasim/memory";

/**
 * How an entry that does not start or end on an IOVA granule is placed when it is not the first or last
 * range of a dma_iova_state (dma_iova_link accepts only granule-aligned interior ranges):
 * - "widen" (default): link the whole granules that hold the entry, exactly the bytes the classic path
 *   maps for it, so the list still needs one IOVA; the entry's data sits at its in-granule offset;
 * - "split": link the entry's own bytes and start a new dma_iova_state wherever the rule would be broken,
 *   so every state holds one aligned run (one IOVA allocation and one IOTLB sync per run).
 */
export type SgInteriorPolicy = "widen" | "split";

export interface TwoStepResult {
  readonly ret: number;
  readonly states: DmaIovaState[];
  readonly stateLens: number[];
}

/** Destroys the states linked so far after a failure. */
function undoStates(dev: DmaDevice, states: DmaIovaState[], stateLens: readonly number[], dir: DmaDirection, attrs: number): void {
  for (const [s, st] of states.entries()) dmaIovaDestroy(dev, st, stateLens[s] ?? 0, dir, attrs);
  states.length = 0;
}

/**
 * dma_map_sg for iommu-dma on the two-step API: the segments of `lay` (what __finalise_sg would return)
 * are packed, in order, into as few dma_iova_states as the link rules and the segment boundary allow;
 * each state gets one dma_iova_try_alloc, one dma_iova_link per physically contiguous run of the same
 * kind, and one dma_iova_sync. Fills the table's DMA fields and returns the segment count, or a negative
 * errno with everything undone.
 */
export function mapSgTwoStep(dev: DmaDevice, table: SgTable, cls: Classified, lay: SgLayout, dir: DmaDirection, attrs: number, interior: SgInteriorPolicy, scratch: SgScratch): TwoStepResult {
  // The plan lives in the call's scratch: dma_iova_link below can run trace subscribers that map lists too.
  const p = scratch;
  const { stateFirst, stateEnd, stateLens } = packStates(dev, table, cls, lay, interior === "widen", p);
  const states: DmaIovaState[] = [];
  const linkAttrs = attrs | DMA_ATTR_SKIP_CPU_SYNC;
  for (let s = 0; s < stateFirst.length; s++) {
    const total = stateLens[s] ?? 0;
    const first = stateFirst[s] ?? 0;
    const st = new DmaIovaState();
    if (!dmaIovaTryAlloc(dev, st, (p.rphys[first] ?? 0) as PhysAddr, total)) {
      undoStates(dev, states, stateLens, dir, linkAttrs);
      return { ret: -Errno.ENOMEM, states, stateLens };
    }
    const err = linkState(dev, st, first, stateEnd[s] ?? first, cls.kinds, p, dir, linkAttrs);
    if (err !== 0) {
      undoStates(dev, states, stateLens, dir, linkAttrs);
      return { ret: err === -Errno.ENOMEM ? err : -Errno.EINVAL, states, stateLens };
    }
    dmaIovaSync(dev, st, 0, total);
    states.push(st);
  }
  if (states.length > 0) table.trace.counters.add(Counter.DmaBookkeepingBytesAllocated, states.length * DMA_IOVA_STATE_BYTES);
  fillDmaFields(table, cls, lay, states, p);
  return { ret: lay.count, states, stateLens };
}

/** The packing of a list into dma_iova_states: state `s` covers the entries [stateFirst[s], stateEnd[s]). */
interface StatePacking {
  readonly stateFirst: number[];
  readonly stateEnd: number[];
  /** The bytes linked into each state. */
  readonly stateLens: number[];
}

/**
 * The planning step: where every entry goes (its state, its offset inside it, the range linked for it)
 * before any IOVA exists. BUS_ADDR entries inside a state's range are not linked. A new state starts where
 * a segment would cross the segment boundary, or (policy "split") where an interior range would not be
 * granule-aligned.
 */
function packStates(dev: DmaDevice, table: SgTable, cls: Classified, lay: SgLayout, widen: boolean, p: SgScratch): StatePacking {
  const { rphys, rlen, rel, dataOff, state } = p;
  // The IOVA domain keeps its granule a power of two of at most 4 KiB, so a mask gives in-granule offsets.
  const gmask = dev.granule - 1;
  const window = dev.segBoundaryMask + 1;
  const kinds = cls.kinds;
  const phys = table.phys;
  const length = table.length;
  const { off, alignedLen, segFirst, segLast, segLen } = lay;
  const stateFirst: number[] = [];
  const stateEnd: number[] = [];
  const stateLens: number[] = [];
  let cur = -1;
  let used = 0;
  let headOff = 0;
  let endedAligned = true;
  for (let k = 0; k < lay.count; k++) {
    const first = segFirst[k] ?? 0;
    if (kinds[first] === EntryKind.BUS_ADDR) continue;
    const last = segLast[k] ?? first;
    const o = off[first] ?? 0;
    const len = segLen[k] ?? 0;
    if (cur >= 0) {
      // Inside a state the position relative to its granule-aligned base decides boundary crossings: the
      // allocation is size-aligned, so a state larger than a window starts on a boundary.
      const at = headOff + used + (widen ? o : 0);
      const crosses = modPow2(at, window) + len > window;
      if (crosses || (!widen && (o !== 0 || !endedAligned))) {
        stateLens.push(used);
        cur = -1;
      }
    }
    if (cur < 0) {
      cur = stateFirst.length;
      stateFirst.push(first);
      stateEnd.push(first);
      used = 0;
      headOff = widen ? 0 : o;
    }
    if (widen) {
      // The whole granules holding each entry; its data sits at its in-granule offset.
      for (let j = first; j <= last; j++) {
        const oj = off[j] ?? 0;
        const a = alignedLen[j] ?? 0;
        rphys[j] = (phys[j] ?? 0) - oj;
        rlen[j] = a;
        dataOff[j] = oj;
        rel[j] = used;
        state[j] = cur;
        used += a;
      }
    } else {
      for (let j = first; j <= last; j++) {
        const pj = phys[j] ?? 0;
        const l = length[j] ?? 0;
        rphys[j] = pj;
        rlen[j] = l;
        dataOff[j] = 0;
        rel[j] = used;
        state[j] = cur;
        used += l;
        endedAligned = (((pj + l) >>> 0) & gmask) === 0;
      }
    }
    stateEnd[cur] = last + 1;
  }
  if (cur >= 0) stateLens.push(used);
  return { stateFirst, stateEnd, stateLens };
}

/**
 * The link step of one state: its entries [first, end) in order, one dma_iova_link per run that is
 * contiguous in memory and of one kind (host-bridge P2P runs with DMA_ATTR_MMIO). Returns 0, or the
 * failing link's negative errno after destroying the state with what it had linked.
 */
function linkState(dev: DmaDevice, st: DmaIovaState, first: number, end: number, kinds: Classified["kinds"], p: SgScratch, dir: DmaDirection, linkAttrs: number): number {
  const { rphys, rlen } = p;
  let linked = 0;
  let runPhys = 0;
  let runLen = 0;
  let runKind = 0;
  for (let j = first; j <= end; j++) {
    const kind = j < end ? (kinds[j] ?? 0) : -1;
    if (kind === EntryKind.BUS_ADDR) continue;
    const pj = rphys[j] ?? 0;
    if (runLen > 0 && (kind !== runKind || pj !== runPhys + runLen)) {
      const err = dmaIovaLink(dev, st, unsafePhysAddr(runPhys), linked, runLen, dir, runKind === EntryKind.HOST_BRIDGE ? linkAttrs | DMA_ATTR_MMIO : linkAttrs);
      if (err !== 0) {
        dmaIovaDestroy(dev, st, linked, dir, linkAttrs);
        return err;
      }
      linked += runLen;
      runLen = 0;
    }
    if (runLen === 0) {
      runPhys = pj;
      runKind = kind;
    }
    runLen += rlen[j] ?? 0;
  }
  return 0;
}

/** The result step: each segment's DMA address (its state's IOVA, or the bus address for P2P) and length. */
function fillDmaFields(table: SgTable, cls: Classified, lay: SgLayout, states: readonly DmaIovaState[], p: SgScratch): void {
  const { rel, dataOff, state } = p;
  const { segFirst, segLen } = lay;
  const kinds = cls.kinds;
  const dmaAddress = table.dmaAddress;
  for (let k = 0; k < lay.count; k++) {
    const first = segFirst[k] ?? 0;
    if (kinds[first] === EntryKind.BUS_ADDR) {
      dmaAddress[k] = lay.segPos[k] ?? 0;
      table.flags[k] = SgDmaFlag.BUS_ADDRESS;
    } else {
      dmaAddress[k] = (states[state[first] ?? 0]?.addr ?? 0) + (rel[first] ?? 0) + (dataOff[first] ?? 0);
    }
    table.dmaLength[k] = segLen[k] ?? 0;
  }
}

/** dma_unmap_sg of a two-step mapping: one dma_iova_destroy per state (CPU syncs were done by the caller). */
export function unmapSgTwoStep(dev: DmaDevice, table: SgTable, states: readonly DmaIovaState[], stateLens: readonly number[], dir: DmaDirection, attrs: number): void {
  for (let s = 0; s < states.length; s++) {
    const st = states[s];
    if (st !== undefined) dmaIovaDestroy(dev, st, stateLens[s] ?? 0, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
  }
  if (states.length > 0) table.trace.counters.add(Counter.DmaBookkeepingBytesFreed, states.length * DMA_IOVA_STATE_BYTES);
}
