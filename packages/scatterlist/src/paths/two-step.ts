import { Counter } from "@dmasim/trace";
import { DMA_ATTR_MMIO, DMA_ATTR_SKIP_CPU_SYNC, DMA_IOVA_STATE_BYTES, DmaIovaState, Errno, dmaIovaDestroy, dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc } from "@dmasim/dma";
import type { DmaDevice, DmaDirection } from "@dmasim/dma";
import { EntryKind } from "../classify.js";
import type { Classified } from "../classify.js";
import { SgDmaFlag } from "../constants.js";
import type { SgLayout } from "../layout.js";
import type { SgTable } from "../sg-table.js";

/**
 * How an entry that does not start or end on an IOVA granule is placed when it is not the first or last
 * range of a dma_iova_state (dma_iova_link accepts only granule-aligned interior ranges):
 * - "widen" (default): link the whole granules that hold the entry, exactly the bytes the classic path
 *   maps for it, so the list still needs one IOVA; the entry's data sits at its in-granule offset;
 * - "split": link the entry's own bytes and start a new dma_iova_state wherever the rule would be broken,
 *   so every state holds one aligned run (one IOVA allocation and one IOTLB sync per run).
 */
export type SgInteriorPolicy = "widen" | "split";

interface Plan {
  rphys: Float64Array;
  rlen: Float64Array;
  rel: Float64Array;
  dataOff: Float64Array;
  state: Uint32Array;
}

let plan: Plan = makePlan(64);

function makePlan(n: number): Plan {
  return { rphys: new Float64Array(n), rlen: new Float64Array(n), rel: new Float64Array(n), dataOff: new Float64Array(n), state: new Uint32Array(n) };
}

export interface TwoStepResult {
  readonly ret: number;
  readonly states: DmaIovaState[];
  readonly stateLens: number[];
}

/**
 * dma_map_sg for iommu-dma on the two-step API: the segments of `lay` (what __finalise_sg would return)
 * are packed, in order, into as few dma_iova_states as the link rules and the segment boundary allow;
 * each state gets one dma_iova_try_alloc, one dma_iova_link per physically contiguous run of the same
 * kind, and one dma_iova_sync. Fills the table's DMA fields and returns the segment count, or a negative
 * errno with everything undone.
 */
export function mapSgTwoStep(dev: DmaDevice, table: SgTable, nents: number, cls: Classified, lay: SgLayout, dir: DmaDirection, attrs: number, interior: SgInteriorPolicy): TwoStepResult {
  if (plan.rphys.length < nents) plan = makePlan(Math.max(nents, plan.rphys.length * 2));
  const { rphys, rlen, rel, dataOff, state } = plan;
  const g = dev.granule;
  const window = dev.segBoundaryMask + 1;
  const kinds = cls.kinds;
  const widen = interior === "widen";
  // Planning: where every entry goes (state, offset inside it) before any IOVA exists.
  const stateFirst: number[] = [];
  const stateLens: number[] = [];
  let cur = -1;
  let used = 0;
  let headOff = 0;
  let endedAligned = true;
  for (let k = 0; k < lay.count; k++) {
    const first = lay.segFirst[k] ?? 0;
    if (kinds[first] === EntryKind.BUS_ADDR) continue;
    const last = lay.segLast[k] ?? first;
    const o = lay.off[first] ?? 0;
    const len = lay.segLen[k] ?? 0;
    if (cur >= 0) {
      // Inside a state the position relative to its granule-aligned base decides boundary crossings: the
      // allocation is size-aligned, so a state larger than a window starts on a boundary.
      const at = headOff + used + (widen ? o : 0);
      const crosses = Math.floor(at / window) !== Math.floor((at + len - 1) / window);
      const unaligned = !widen && (o !== 0 || !endedAligned);
      if (crosses || unaligned) {
        stateLens.push(used);
        cur = -1;
      }
    }
    if (cur < 0) {
      cur = stateFirst.length;
      stateFirst.push(first);
      used = 0;
      headOff = widen ? 0 : o;
    }
    for (let j = first; j <= last; j++) {
      const phys = table.phys[j] ?? 0;
      const l = table.length[j] ?? 0;
      const oj = lay.off[j] ?? 0;
      rphys[j] = widen ? phys - oj : phys;
      rlen[j] = widen ? (lay.alignedLen[j] ?? 0) : l;
      dataOff[j] = widen ? oj : 0;
      rel[j] = used;
      state[j] = cur;
      used += rlen[j] ?? 0;
      const end = phys + l;
      endedAligned = end - Math.floor(end / g) * g === 0;
    }
  }
  if (cur >= 0) stateLens.push(used);

  const states: DmaIovaState[] = [];
  const linkAttrs = attrs | DMA_ATTR_SKIP_CPU_SYNC;
  const undo = (extra: DmaIovaState | undefined, extraLen: number): void => {
    if (extra !== undefined) dmaIovaDestroy(dev, extra, extraLen, dir, linkAttrs);
    for (let s = 0; s < states.length; s++) dmaIovaDestroy(dev, states[s] ?? new DmaIovaState(), stateLens[s] ?? 0, dir, linkAttrs);
    states.length = 0;
  };
  for (let s = 0; s < stateFirst.length; s++) {
    const total = stateLens[s] ?? 0;
    const first = stateFirst[s] ?? 0;
    const st = new DmaIovaState();
    if (!dmaIovaTryAlloc(dev, st, rphys[first] ?? 0, total)) {
      undo(undefined, 0);
      return { ret: -Errno.ENOMEM, states, stateLens };
    }
    // Link the state's entries in order, one call per run that is contiguous in memory and of one kind.
    let linked = 0;
    let j = first;
    let err = 0;
    while (linked < total && err === 0) {
      while (kinds[j] === EntryKind.BUS_ADDR) j++;
      const runPhys = rphys[j] ?? 0;
      const runKind = kinds[j];
      let runLen = rlen[j] ?? 0;
      j++;
      while (linked + runLen < total) {
        let n = j;
        while (kinds[n] === EntryKind.BUS_ADDR) n++;
        if (kinds[n] !== runKind || rphys[n] !== runPhys + runLen) break;
        runLen += rlen[n] ?? 0;
        j = n + 1;
      }
      const mmio = runKind === EntryKind.HOST_BRIDGE ? DMA_ATTR_MMIO : 0;
      err = dmaIovaLink(dev, st, runPhys, linked, runLen, dir, linkAttrs | mmio);
      if (err === 0) linked += runLen;
    }
    if (err !== 0) {
      undo(st, linked);
      return { ret: err === -Errno.ENOMEM ? err : -Errno.EINVAL, states, stateLens };
    }
    dmaIovaSync(dev, st, 0, total);
    states.push(st);
  }
  if (states.length > 0) table.trace.counters.add(Counter.DmaBookkeepingBytesAllocated, states.length * DMA_IOVA_STATE_BYTES);
  for (let k = 0; k < lay.count; k++) {
    const first = lay.segFirst[k] ?? 0;
    if (kinds[first] === EntryKind.BUS_ADDR) {
      table.dmaAddress[k] = lay.segPos[k] ?? 0;
      table.flags[k] = SgDmaFlag.BUS_ADDRESS;
    } else {
      const st = states[state[first] ?? 0];
      table.dmaAddress[k] = (st?.addr ?? 0) + (rel[first] ?? 0) + (dataOff[first] ?? 0);
    }
    table.dmaLength[k] = lay.segLen[k] ?? 0;
  }
  return { ret: lay.count, states, stateLens };
}

/** dma_unmap_sg of a two-step mapping: one dma_iova_destroy per state (CPU syncs were done by the caller). */
export function unmapSgTwoStep(dev: DmaDevice, table: SgTable, states: readonly DmaIovaState[], stateLens: readonly number[], dir: DmaDirection, attrs: number): void {
  for (let s = 0; s < states.length; s++) {
    const st = states[s];
    if (st !== undefined) dmaIovaDestroy(dev, st, stateLens[s] ?? 0, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
  }
  if (states.length > 0) table.trace.counters.add(Counter.DmaBookkeepingBytesFreed, states.length * DMA_IOVA_STATE_BYTES);
}
