import type { DmaDevice } from "@dmasim/dma";

/**
 * Working arrays of one dma_map_sg call: the entry kinds (classify.ts), the layout inside the IOVA
 * (layout.ts) and the two-step placement (paths/two-step.ts). They are reused from call to call so a
 * mapping allocates nothing per entry, but they belong to one kernel and to one call at a time: a trace
 * subscriber that maps another list (on this kernel or another) while a mapping is in progress gets
 * arrays of its own, never the ones the outer call is still reading.
 */
export class SgScratch {
  /** Set while a call uses the arrays. */
  busy = false;
  kinds: Uint8Array;
  busAddr: Float64Array;
  off: Float64Array;
  alignedLen: Float64Array;
  paddedLen: Float64Array;
  pos: Float64Array;
  segFirst: Uint32Array;
  segLast: Uint32Array;
  segPos: Float64Array;
  segLen: Float64Array;
  rphys: Float64Array;
  rlen: Float64Array;
  rel: Float64Array;
  dataOff: Float64Array;
  state: Uint32Array;

  constructor(capacity: number) {
    const n = Math.max(capacity, 1);
    this.kinds = new Uint8Array(n);
    this.busAddr = new Float64Array(n);
    this.off = new Float64Array(n);
    this.alignedLen = new Float64Array(n);
    this.paddedLen = new Float64Array(n);
    this.pos = new Float64Array(n);
    this.segFirst = new Uint32Array(n);
    this.segLast = new Uint32Array(n);
    this.segPos = new Float64Array(n);
    this.segLen = new Float64Array(n);
    this.rphys = new Float64Array(n);
    this.rlen = new Float64Array(n);
    this.rel = new Float64Array(n);
    this.dataOff = new Float64Array(n);
    this.state = new Uint32Array(n);
  }

  get capacity(): number {
    return this.kinds.length;
  }

  /** Grows every array to at least `n` entries (doubling, so a growing workload reallocates rarely). */
  reserve(n: number): void {
    if (n <= this.kinds.length) return;
    const grown = new SgScratch(Math.max(n, this.kinds.length * 2));
    this.kinds = grown.kinds;
    this.busAddr = grown.busAddr;
    this.off = grown.off;
    this.alignedLen = grown.alignedLen;
    this.paddedLen = grown.paddedLen;
    this.pos = grown.pos;
    this.segFirst = grown.segFirst;
    this.segLast = grown.segLast;
    this.segPos = grown.segPos;
    this.segLen = grown.segLen;
    this.rphys = grown.rphys;
    this.rlen = grown.rlen;
    this.rel = grown.rel;
    this.dataOff = grown.dataOff;
    this.state = grown.state;
  }
}

/** The key of scatterlist's scratch in a kernel's consumer storage (a symbol: nothing else can collide). */
const SCRATCH_KEY = Symbol("@dmasim/scatterlist map scratch");

/** A named function rather than a closure per call: a map call allocates nothing to find its scratch. */
function makeKernelScratch(): SgScratch {
  return new SgScratch(64);
}

/**
 * The kernel's scratch for a call over `nents` entries, marked busy until `releaseScratch`. A nested call
 * (the kernel's scratch is busy) gets fresh arrays that are dropped afterwards.
 */
export function acquireScratch(kernel: DmaDevice["kernel"], nents: number): SgScratch {
  let s = kernel.consumerScratch(SCRATCH_KEY, makeKernelScratch);
  if (s.busy) s = new SgScratch(nents);
  s.reserve(nents);
  s.busy = true;
  return s;
}

export function releaseScratch(s: SgScratch): void {
  s.busy = false;
}
