import type { DmaAddr } from "./constants.js";
import { DmaInputError } from "./errors.js";
import { isIndex } from "./validate.js";

/**
 * struct dma_iova_state. `addr` is the IOVA of byte 0 of what was asked for (it keeps the first range's
 * offset inside its granule). The kernel packs DMA_IOVA_USE_SWIOTLB into bit 63 of `__size`; dmasim keeps
 * sizes as safe integers, so the flag is a separate field with the same meaning.
 */
export class DmaIovaState {
  /** The IOVA of byte 0 of what was asked for (dma_iova_try_alloc); 0 when the IOVA path is not in use. */
  addr = 0 as DmaAddr;
  /** Bytes asked for in dma_iova_try_alloc; 0 when the IOVA path is not in use. */
  size = 0;
  /** DMA_IOVA_USE_SWIOTLB: some range of this state was bounced. */
  useSwiotlb = false;

  constructor() {
    // An IOVA is above 2^30 (a small integer's limit) as a rule: addr is a double from birth, so that
    // the first one stored cannot change the field's representation and deprecate the hidden class of
    // every state made before it (code optimised on one state would deoptimise on the next).
    this.addr = 0.5 as DmaAddr;
    this.addr = 0 as DmaAddr;
  }
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

/** checkIovaState (not writable) would pass. */
export function isIovaState(state: DmaIovaState): boolean {
  return typeof state === "object" && (state as unknown) !== null && isIndex(state.addr) && isIndex(state.size) && typeof state.useSwiotlb === "boolean";
}

/**
 * The state argument of every dma_iova_* call: an object with the fields of a DmaIovaState holding what
 * dma_iova_try_alloc could have put there. Anything else (undefined, a number, a state whose fields were
 * overwritten) would otherwise fail deep inside with a TypeError or map at a NaN address. The test is of
 * the fields, not of the class, because the fast link path can afford no more than reading `addr`.
 * `writable` for dma_iova_try_alloc, which fills the state in.
 */
export function checkIovaState(fn: string, state: DmaIovaState, writable = false): void {
  if (typeof state !== "object" || (state as unknown) === null) {
    throw new DmaInputError(fn, "state", state, "a DmaIovaState (new DmaIovaState())");
  }
  if (!isIndex(state.addr) || !isIndex(state.size) || typeof state.useSwiotlb !== "boolean") {
    throw new DmaInputError(fn, "state", `{ addr: ${String(state.addr)}, size: ${String(state.size)}, useSwiotlb: ${String(state.useSwiotlb)} }`, "a DmaIovaState as dma_iova_try_alloc left it (addr and size safe integers >= 0, useSwiotlb a boolean)");
  }
  if (writable && Object.isFrozen(state)) {
    throw new DmaInputError(fn, "state", "a frozen DmaIovaState", "a DmaIovaState dma_iova_try_alloc can fill in");
  }
}
