import { hex } from "@dmasim/trace";
import type { DmaDebugChecker } from "./checker.js";
import type { DmaDebugCheck } from "./errors.js";

/**
 * What dmasim tracks for one dma_iova_state. Upstream dma-debug does not look at the two-step API at all;
 * these checks catch the misuse its documentation forbids but no code enforces.
 */
interface IovaTrack {
  readonly device: string;
  /** Granule-aligned start of the allocation and its length in granules. */
  readonly base: number;
  readonly granules: number;
  readonly granule: number;
  /** Bytes the caller asked for in dma_iova_try_alloc (dma_iova_size). */
  readonly size: number;
  readonly linked: Uint8Array;
  readonly synced: Uint8Array;
  /** End offset of the last link when it did not end on a granule, else -1. */
  partialEnd: number;
  destroyed: boolean;
}

/** What the checks answer for a state the call must not touch: its IOVA was given back, or it is another device's. */
const REFUSED = Symbol("refused");

/** Tracks every live dma_iova_state; keyed by the state object so stale copies cannot confuse it. */
export class IovaTracker {
  readonly #checker: DmaDebugChecker;
  readonly #tracks = new WeakMap<object, IovaTrack>();
  readonly #live = new Map<string, Set<IovaTrack>>();
  /**
   * False while nothing can have a track: dma-debug was off when the kernel was made and no state has
   * been tracked since (a mode switched on later turns it on with the first tracked allocation). The
   * bookkeeping calls made after every link, unlink and destroy return on this one test instead of a
   * WeakMap lookup, so with dma-debug off they cost nothing on the hot paths. True from the start when
   * dma-debug is on, so the fast link path (which skips the checks) is never taken then, not even for a
   * state no allocation has filled.
   */
  #anyTracked: boolean;
  /** One-entry cache of #tracks (see #track); kept exact by the only two places that change #tracks. */
  #lastState: object | undefined = undefined;
  #lastTrack: IovaTrack | undefined = undefined;

  constructor(checker: DmaDebugChecker) {
    this.#checker = checker;
    this.#anyTracked = checker.enabled;
  }

  /**
   * False while dma-debug is off and nothing was ever tracked. While false, every check here answers
   * "go ahead" without reporting anything (no state has a track) and every record returns at once: the
   * hot paths test this instead of calling them.
   */
  get tracking(): boolean {
    return this.#anyTracked;
  }

  /** dma_iova_try_alloc succeeded: start tracking (a reused state object starts afresh, like the memset). */
  allocated(state: object, device: string, addr: number, size: number, granule: number): void {
    if (!this.#checker.enabled) return;
    this.#drop(state);
    this.#anyTracked = true;
    const pad = addr % granule;
    const base = addr - pad;
    const granules = Math.ceil((size + pad) / granule);
    const track: IovaTrack = {
      device,
      base,
      granules,
      granule,
      size,
      linked: new Uint8Array(granules),
      synced: new Uint8Array(granules),
      partialEnd: -1,
      destroyed: false,
    };
    this.#tracks.set(state, track);
    this.#lastState = state;
    this.#lastTrack = track;
    let set = this.#live.get(device);
    if (set === undefined) {
      set = new Set();
      this.#live.set(device, set);
    }
    set.add(track);
  }

  /** Checks a dma_iova_link before it runs; returns false when the call must not proceed. */
  link(state: object, device: string, stateAddr: number, offset: number, size: number): boolean {
    const t = this.#alive(state, device, "dma_iova_link");
    if (t === REFUSED) return false;
    if (t === undefined) return true;
    if (offset + size > t.size) {
      this.#checker.report("iova-link-outside-allocation", device, `dma_iova_link outside the allocated IOVA [offset=${offset}] [size=${size}] [allocated=${t.size} bytes at ${hex(stateAddr)}]`);
      return false;
    }
    if (offset > 0 && (stateAddr + offset) % t.granule !== 0) {
      this.#checker.report("iova-link-unaligned-interior", device, `dma_iova_link of an interior range that does not start on the merge boundary [offset=${offset}] [iova=${hex(stateAddr + offset)}] [granule=${t.granule}]`);
    }
    if (t.partialEnd >= 0 && offset >= t.partialEnd) {
      this.#checker.report("iova-link-unaligned-interior", device, `dma_iova_link after a range that did not end on a granule: only the last range may be partial [previous end offset=${t.partialEnd}] [offset=${offset}]`);
    }
    const g0 = this.#first(t, stateAddr + offset);
    const g1 = this.#end(t, stateAddr + offset, size);
    for (let g = g0; g < g1; g++) {
      if (t.linked[g] === 1) {
        this.#checker.report("iova-link-overlap", device, `dma_iova_link over a range that is already linked [iova=${hex(t.base + g * t.granule)}] [offset=${offset}] [size=${size}]`);
        return false;
      }
    }
    return true;
  }

  /** Records a link that succeeded. */
  linked(state: object, stateAddr: number, offset: number, size: number): void {
    if (!this.#anyTracked) return;
    const t = this.#track(state);
    if (t === undefined || t.destroyed) return;
    const g0 = this.#first(t, stateAddr + offset);
    const g1 = this.#end(t, stateAddr + offset, size);
    t.linked.fill(1, g0, g1);
    t.synced.fill(0, g0, g1);
    const end = stateAddr + offset + size;
    if (end % t.granule !== 0 && offset + size < t.size) t.partialEnd = Math.max(t.partialEnd, offset + size);
  }

  /** Checks and records a dma_iova_sync; returns false when the call must not proceed. */
  synced(state: object, device: string, stateAddr: number, offset: number, size: number): boolean {
    const t = this.#alive(state, device, "dma_iova_sync");
    if (t === REFUSED) return false;
    if (t === undefined) return true;
    if (!this.#inside(t, device, "dma_iova_sync", stateAddr, offset, size, "iova-sync-outside-allocation")) return false;
    const g0 = this.#first(t, stateAddr + offset);
    const g1 = this.#end(t, stateAddr + offset, size);
    for (let g = g0; g < g1; g++) if (t.linked[g] === 1) t.synced[g] = 1;
    return true;
  }

  /**
   * Checks a dma_iova_unlink; returns false when the range runs past the allocation (unmapping it would
   * clear the neighbouring allocation's PTEs) or some of it was never linked.
   */
  unlink(state: object, device: string, stateAddr: number, offset: number, size: number, fn = "dma_iova_unlink"): boolean {
    const t = this.#alive(state, device, fn);
    if (t === REFUSED) return false;
    if (t === undefined) return true;
    if (!this.#inside(t, device, fn, stateAddr, offset, size)) return false;
    const g0 = this.#first(t, stateAddr + offset);
    const g1 = this.#end(t, stateAddr + offset, size);
    for (let g = g0; g < g1; g++) {
      if (t.linked[g] !== 1) {
        this.#checker.report("iova-unlink-not-linked", device, `${fn} of a range that was never linked [iova=${hex(t.base + g * t.granule)}] [offset=${offset}] [size=${size}]`);
        return false;
      }
    }
    return true;
  }

  unlinked(state: object, stateAddr: number, offset: number, size: number): void {
    if (!this.#anyTracked) return;
    const t = this.#track(state);
    if (t === undefined) return;
    const g0 = this.#first(t, stateAddr + offset);
    const g1 = this.#end(t, stateAddr + offset, size);
    t.linked.fill(0, g0, g1);
    t.synced.fill(0, g0, g1);
    if (t.partialEnd >= 0 && t.partialEnd <= offset + size && t.partialEnd > offset) t.partialEnd = -1;
  }

  /**
   * dma_iova_destroy: mapped_len must cover exactly what is linked. Returns false when the call must not
   * proceed (the IOVA was already given back: doing it again would hand one range to two users).
   */
  destroy(state: object, device: string, stateAddr: number, mappedLen: number): boolean {
    const t = this.#alive(state, device, "dma_iova_destroy");
    if (t === REFUSED) return false;
    if (t === undefined) return true;
    if (!this.#inside(t, device, "dma_iova_destroy", stateAddr, 0, mappedLen)) return false;
    const [, g1] = mappedLen === 0 ? [0, 0] : this.#granules(t, stateAddr, mappedLen);
    let linkedOutside = 0;
    let unlinkedInside = 0;
    for (let g = 0; g < t.granules; g++) {
      if (g < g1 && t.linked[g] !== 1) unlinkedInside++;
      if (g >= g1 && t.linked[g] === 1) linkedOutside++;
    }
    if (linkedOutside > 0 || unlinkedInside > 0) {
      this.#checker.report("iova-destroy-length-mismatch", device, `dma_iova_destroy with a mapped_len that does not match what is linked [mapped_len=${mappedLen}] [granules linked beyond it=${linkedOutside}] [granules inside it never linked=${unlinkedInside}]`);
    }
    return true;
  }

  /** dma_iova_free: every link must already be undone. Returns false when the call must not proceed. */
  free(state: object, device: string): boolean {
    const t = this.#alive(state, device, "dma_iova_free");
    if (t === REFUSED) return false;
    if (t === undefined) return true;
    const n = t.linked.reduce((a, b) => a + b, 0);
    if (n > 0) this.#checker.report("iova-free-with-links", device, `dma_iova_free with ${n} granule(s) still linked [iova=${hex(t.base)}]: unlink them or use dma_iova_destroy`);
    return true;
  }

  /** The IOVA went back to the allocator: later use of the state is use-after-destroy. */
  released(state: object): void {
    if (!this.#anyTracked) return;
    const t = this.#track(state);
    if (t === undefined) return;
    t.destroyed = true;
    this.#live.get(t.device)?.delete(t);
  }

  /** A device touched [addr, addr+len): report a linked granule that was never synced. */
  deviceAccess(device: string, addr: number, len: number): void {
    const set = this.#live.get(device);
    if (set === undefined || set.size === 0) return;
    for (const t of set) {
      if (addr + len <= t.base || addr >= t.base + t.granules * t.granule) continue;
      const [g0, g1] = this.#granules(t, Math.max(addr, t.base), Math.min(addr + len, t.base + t.granules * t.granule) - Math.max(addr, t.base));
      for (let g = g0; g < g1; g++) {
        if (t.linked[g] === 1 && t.synced[g] !== 1) {
          this.#checker.report("iova-access-before-sync", device, `device accessed IOVA ${hex(t.base + g * t.granule)} that was linked but not yet synced: call dma_iova_sync after dma_iova_link and before starting DMA`);
          return;
        }
      }
    }
  }

  /** States of a device that still hold an IOVA (for leak reports on unbind). */
  liveCount(device: string): number {
    return this.#live.get(device)?.size ?? 0;
  }

  forget(device: string): void {
    this.#live.delete(device);
  }

  /**
   * The live track of `state`, undefined when the state is not tracked (debug off, or allocated before),
   * or REFUSED after reporting a use after destroy or by another device. Such a call is then skipped, as dma-debug's unmap
   * of an unknown address is: carrying on would unmap or free a range that may already belong to
   * someone else, and a collect-mode run would go on with a corrupted model.
   */
  #alive(state: object, device: string, fn: string): IovaTrack | undefined | typeof REFUSED {
    if (!this.#checker.enabled) return undefined;
    const t = this.#track(state);
    if (t === undefined) return undefined;
    if (t.destroyed) {
      this.#checker.report("iova-use-after-destroy", device, `${fn} on a dma_iova_state whose IOVA was already destroyed or freed`);
      return REFUSED;
    }
    if (t.device !== device) {
      // The IOVA belongs to the other device's domain: linking or unmapping it in this one would write
      // an address this device's allocator may hand to someone else.
      this.#checker.report("iova-state-foreign-device", device, `${fn} on a dma_iova_state that dma_iova_try_alloc filled for ${t.device}`);
      return REFUSED;
    }
    return t;
  }

  /**
   * [offset, offset+size) lies inside the allocation; else reported, and false: an unlink or destroy past
   * it would clear the neighbouring allocation's PTEs (and, as the unmap then finds fewer bytes than
   * asked, WARN between the clearing and the IOTLB invalidation); a sync past it would make the
   * neighbour's pending PTEs visible on an IOMMU that needs iotlb_sync_map.
   */
  #inside(t: IovaTrack, device: string, fn: string, stateAddr: number, offset: number, size: number, check: DmaDebugCheck = "iova-unlink-outside-allocation"): boolean {
    if (offset + size <= t.size) return true;
    this.#checker.report(check, device, `${fn} outside the allocated IOVA [offset=${offset}] [size=${size}] [allocated=${t.size} bytes at ${hex(stateAddr)}]`);
    return false;
  }

  #drop(state: object): void {
    const old = this.#tracks.get(state);
    if (old !== undefined) this.#live.get(old.device)?.delete(old);
    this.#tracks.delete(state);
    if (this.#lastState === state) this.#lastTrack = undefined;
  }

  /**
   * The track of `state`, through a one-entry cache: a driver links a state's ranges one after another,
   * and each link asks twice (check, then record), so most lookups skip the WeakMap.
   */
  #track(state: object): IovaTrack | undefined {
    if (state === this.#lastState) return this.#lastTrack;
    const t = this.#tracks.get(state);
    this.#lastState = state;
    this.#lastTrack = t;
    return t;
  }

  /** First granule index that [iova, …) touches, clamped to the allocation (as #granules, without a tuple). */
  #first(t: IovaTrack, iova: number): number {
    return Math.max(0, Math.floor((iova - t.base) / t.granule));
  }

  /** End (exclusive) granule index of [iova, iova+size), clamped to the allocation. */
  #end(t: IovaTrack, iova: number, size: number): number {
    return Math.min(t.granules, Math.ceil((iova + size - t.base) / t.granule));
  }

  /** Granule index range [g0, g1) that [iova, iova+size) touches, clamped to the allocation. */
  #granules(t: IovaTrack, iova: number, size: number): [number, number] {
    const g0 = Math.max(0, Math.floor((iova - t.base) / t.granule));
    const g1 = Math.min(t.granules, Math.ceil((iova + size - t.base) / t.granule));
    return [g0, g1];
  }
}
