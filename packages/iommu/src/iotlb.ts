import { type Counters } from "@dmasim/trace";
import { Counter } from "./counters.js";
import * as pte from "./pte.js";

const LEVEL_SIZE = pte.LEVEL_SIZE;
const C_EVICTIONS = Counter.IotlbEvictions;
const TWO_32 = 4294967296;

/** log2 of the leaf size of each level, and the mask of the offset inside it (all below 2^31). */
const LEVEL_SHIFT = [0, 12, 21, 30];
const LEVEL_MASK = [0, 2 ** 12 - 1, 2 ** 21 - 1, 2 ** 30 - 1];

/** IotlbHeld.busy: the IOTLB holds an entry of the domain. */
const BUSY_HELD = 1;
/** IotlbHeld.busy: someone records or listens to the trace events (`Iotlb.setEventsActive`). */
const BUSY_EVENTS = 2;

/**
 * What a single-page unmap of one domain must do beyond the page table, kept current by the IOTLB (see
 * `Iotlb.heldFlag`): `busy` is 0 when the IOTLB holds no entry of the domain and nobody records or
 * listens to the trace events, so the unmap tests one field for both.
 */
export class IotlbHeld {
  /** BUSY_HELD while the IOTLB holds an entry of the domain, plus BUSY_EVENTS while the events are active. */
  busy = 0;
}

/**
 * The IOTLB: a bounded, set-associative cache of translations with LRU replacement inside a set, tagged
 * by domain (like VT-d domain ids and SMMU ASIDs/VMIDs). An entry caches one leaf at its own size, so a
 * 2 MiB leaf costs one entry, as on hardware that caches large pages.
 *
 * Entries live in parallel typed arrays; slot `set * ways + way`. An empty slot has domain 0.
 *
 * Per domain the cache also keeps counts of its valid entries (in all and per leaf level) and an
 * interval holding them all (widened on insert, reset when the domain's last entry goes). They make
 * range visits cheap when they can find nothing, and size the visits that can: bookkeeping only, no
 * change to what an invalidation drops or a lookup finds.
 *
 * Entries are never dropped because a PTE was cleared: only an invalidation removes them. Unmap marks
 * affected entries stale so a later hit can be counted (IotlbStaleHits), which shows the window lazy
 * invalidation opens: the device still reaches the old physical page.
 */
export class Iotlb {
  readonly capacity: number;
  readonly ways: number;
  readonly sets: number;
  readonly #domain: Int32Array;
  readonly #base: Float64Array;
  readonly #level: Uint8Array;
  readonly #phys: Float64Array;
  readonly #perm: Uint8Array;
  readonly #stale: Uint8Array;
  readonly #stamp: Float64Array;
  readonly #counters: Counters;
  /** Leaf levels to probe, smallest first (most mappings are 4 KiB). */
  readonly #levels: number[];
  /** sets - 1 when sets is a power of two (an AND instead of a division), else -1. */
  readonly #setMask: number;
  /**
   * Valid entries per domain: index `domain * 4` holds the domain's total, `domain * 4 + level` its
   * entries of that leaf level. Grown when a larger domain id first inserts (ids are small integers).
   */
  #valid = new Int32Array(64);
  /**
   * An interval [#lo, #hi) holding every valid entry of the domain (empty when it has none): a range
   * outside it holds none of them. Conservative: dropping an entry never narrows it.
   */
  #lo = new Float64Array(16).fill(Infinity);
  #hi = new Float64Array(16).fill(-Infinity);
  #tick = 0;
  #size = 0;
  /**
   * The flags handed out by `heldFlag`, by domain id: each kept equal to "the domain has a valid entry"
   * (BUSY_HELD) or "the unit's trace events are active" (BUSY_EVENTS).
   */
  readonly #held: (IotlbHeld | undefined)[] = [];
  /** BUSY_EVENTS when the unit's trace events are active (setEventsActive), else 0. */
  #eventsBusy = 0;

  constructor(counters: Counters, capacity: number, ways: number, leafLevels: readonly number[]) {
    counters.declare(Counter);
    this.capacity = capacity;
    this.ways = ways;
    this.sets = capacity / ways;
    this.#setMask = (this.sets & (this.sets - 1)) === 0 ? this.sets - 1 : -1;
    this.#domain = new Int32Array(capacity);
    this.#base = new Float64Array(capacity);
    this.#level = new Uint8Array(capacity);
    this.#phys = new Float64Array(capacity);
    this.#perm = new Uint8Array(capacity);
    this.#stale = new Uint8Array(capacity);
    this.#stamp = new Float64Array(capacity);
    this.#counters = counters;
    this.#levels = [...leafLevels].sort((a, b) => a - b);
  }

  /** Valid entries. */
  get size(): number {
    return this.#size;
  }

  /**
   * Set index of the leaf of `level` holding the address whose low and high 32-bit halves are given:
   * its page number's bits folded with the domain tag and level. Integer arithmetic only: this is on
   * every translation.
   */
  #set(domain: number, low: number, high: number, level: number): number {
    const shift = LEVEL_SHIFT[level] ?? 0;
    const h = (low >>> shift) ^ Math.imul(high, 0x27d4eb2f) ^ Math.imul(domain, 0x9e3779b1) ^ Math.imul(level, 0x85ebca6b);
    const mixed = (h ^ (h >>> 15)) & 0x7fffffff;
    return this.#setMask >= 0 ? mixed & this.#setMask : mixed % this.sets;
  }

  #setOf(domain: number, base: number, level: number): number {
    return this.#set(domain, base >>> 0, (base / TWO_32) >>> 0, level);
  }

  /** Finds the entry translating `iova` for `domain`; returns its slot or -1. Refreshes its LRU stamp. */
  lookup(domain: number, iova: number): number {
    const ways = this.ways;
    const levels = this.#levels;
    const valid = this.#valid;
    const d4 = domain * 4;
    // ToUint32 is arithmetic modulo 2^32, so `>>> 0` gives the low half exactly and the division
    // (by a power of two) the high half: leaves are at most 1 GiB, so the offset is in the low half.
    const low = iova >>> 0;
    const high = (iova / 4294967296) >>> 0;
    for (const level of levels) {
      // A level at which the domain has no entry cannot hit: no set to probe (a miss of a domain with
      // only 4 KiB entries probes one set, not one per supported leaf size). Measured on the Iotlb alone,
      // 2048 entries, 1 M distinct 4 KiB IOVAs: miss + insert 49-73 ns against 77-113 ns, a hit 23-33 ns
      // against 43-57 ns (CPU time, base and change interleaved in one process, 5 rounds, loaded machine).
      if ((valid[d4 + level] ?? 0) === 0) continue;
      const base = iova - (low & (LEVEL_MASK[level] ?? 0));
      const first = this.#set(domain, low, high, level) * ways;
      for (let j = first; j < first + ways; j++) {
        if (this.#domain[j] === domain && this.#base[j] === base && this.#level[j] === level) {
          this.#stamp[j] = ++this.#tick;
          return j;
        }
      }
    }
    return -1;
  }

  physOf(slot: number, iova: number): number {
    return (this.#phys[slot] ?? 0) + (iova - (this.#base[slot] ?? 0));
  }

  permOf(slot: number): number {
    return this.#perm[slot] ?? 0;
  }

  isStale(slot: number): boolean {
    return this.#stale[slot] !== 0;
  }

  /** Caches a leaf; evicts the least recently used entry of the set when it is full. */
  insert(domain: number, base: number, level: number, phys: number, perm: number): void {
    if (domain * 4 + 3 >= this.#valid.length) this.#growDomains(domain);
    const first = this.#setOf(domain, base, level) * this.ways;
    let victim = first;
    let oldest = Infinity;
    for (let j = first; j < first + this.ways; j++) {
      if (this.#domain[j] === 0) {
        victim = j;
        oldest = -1;
        break;
      }
      if ((this.#stamp[j] ?? 0) < oldest) {
        oldest = this.#stamp[j] ?? 0;
        victim = j;
      }
    }
    if (oldest === -1) this.#size++;
    else {
      this.#counters.add(C_EVICTIONS);
      this.#uncount(victim);
    }
    const valid = this.#valid;
    const d4 = domain * 4;
    if ((valid[d4] ?? 0) === 0) this.#setHeld(domain, true);
    valid[d4] = (valid[d4] ?? 0) + 1;
    valid[d4 + level] = (valid[d4 + level] ?? 0) + 1;
    const end = base + (LEVEL_SIZE[level] ?? 0);
    if (base < (this.#lo[domain] ?? Infinity)) this.#lo[domain] = base;
    if (end > (this.#hi[domain] ?? -Infinity)) this.#hi[domain] = end;
    this.#domain[victim] = domain;
    this.#base[victim] = base;
    this.#level[victim] = level;
    this.#phys[victim] = phys;
    this.#perm[victim] = perm;
    this.#stale[victim] = 0;
    this.#stamp[victim] = ++this.#tick;
  }

  /** Every valid entry, in slot order (for inspection and tests; allocates). */
  entries(): { slot: number; domain: number; base: number; level: number; stale: boolean }[] {
    const out: { slot: number; domain: number; base: number; level: number; stale: boolean }[] = [];
    for (let j = 0; j < this.capacity; j++) {
      const domain = this.#domain[j] ?? 0;
      if (domain !== 0) out.push({ slot: j, domain, base: this.#base[j] ?? 0, level: this.#level[j] ?? 0, stale: this.#stale[j] !== 0 });
    }
    return out;
  }

  /**
   * Whether any entry of `domain` is cached (nothing translated since the last invalidation when not):
   * what a `heldFlag` starts from; the domains' single-page unmaps read the flag instead.
   */
  holds(domain: number): boolean {
    return (this.#valid[domain * 4] ?? 0) !== 0;
  }

  /**
   * The domain's "holds entries" flag as a field the IOTLB keeps current (set by the first insert,
   * cleared when the last entry goes): one field load for a domain's single-page unmap, which `holds`
   * makes four (the counts array, its bounds, the element). One flag per domain, made on first request.
   */
  heldFlag(domain: number): IotlbHeld {
    let h = this.#held[domain];
    if (h === undefined) {
      h = new IotlbHeld();
      h.busy = (this.holds(domain) ? BUSY_HELD : 0) | this.#eventsBusy;
      this.#held[domain] = h;
    }
    return h;
  }

  /**
   * Drops the domain's flag (its domain was freed). The IOTLB no longer keeps it current, so it is left
   * set for good: a single-page unmap of a freed domain (a use after free the domain does not refuse)
   * then takes the path that marks stale entries and emits its event, whoever listens later.
   */
  releaseHeldFlag(domain: number): void {
    const h = this.#held[domain];
    if (h !== undefined) {
      h.busy = BUSY_HELD | BUSY_EVENTS;
      this.#held[domain] = undefined;
    }
  }

  #setHeld(domain: number, held: boolean): void {
    const h = this.#held[domain];
    if (h !== undefined) h.busy = held ? h.busy | BUSY_HELD : h.busy & ~BUSY_HELD;
  }

  /**
   * Folds "the unit's trace events are active" into every domain's flag (the unit calls it from the
   * events' onActiveChange hook), so that a quiet single-page unmap tests one field, not two objects'
   * (the figure is at the test, in IommuDomain.unmap).
   */
  setEventsActive(active: boolean): void {
    this.#eventsBusy = active ? BUSY_EVENTS : 0;
    for (const h of this.#held) if (h !== undefined) h.busy = (h.busy & ~BUSY_EVENTS) | this.#eventsBusy;
  }

  /** Marks stale every entry of `domain` overlapping [start, end). */
  markStale(domain: number, start: number, end: number): void {
    if (this.holds(domain)) this.#visitRange(domain, start, end, false);
  }

  /** Drops every entry of `domain` overlapping [start, end). */
  invalidateRange(domain: number, start: number, end: number): void {
    this.#visitRange(domain, start, end, true);
  }

  /** Drops every entry of `domain`. */
  invalidateDomain(domain: number): void {
    const tags = this.#domain;
    const d4 = domain * 4;
    for (let j = 0; j < this.capacity && (this.#valid[d4] ?? 0) !== 0; j++) if (tags[j] === domain) this.#drop(j);
  }

  invalidateAll(): void {
    for (const h of this.#held) if (h !== undefined) h.busy &= ~BUSY_HELD;
    this.#domain.fill(0);
    this.#stale.fill(0);
    this.#valid.fill(0);
    this.#lo.fill(Infinity);
    this.#hi.fill(-Infinity);
    this.#size = 0;
  }

  /**
   * Drops (or marks stale) the entries of `domain` overlapping [start, end). Nothing to do when the
   * domain has no entry in the cache or none near the range (its interval). Otherwise the range is
   * clipped to that interval and the cheaper of two exact methods is taken: probing the set of every
   * leaf the clipped range can hold, at the levels where the domain has entries (`ways` slots per
   * leaf), or scanning the cache, which stops once it has seen all of the domain's entries. A 4 KiB
   * range with only 4 KiB entries cached is one set.
   */
  #visitRange(domain: number, start: number, end: number, drop: boolean): void {
    const valid = this.#valid;
    const d4 = domain * 4;
    let remaining = valid[d4] ?? 0;
    if (remaining === 0) return;
    const lo = Math.max(start, this.#lo[domain] ?? Infinity);
    const hi = Math.min(end, this.#hi[domain] ?? -Infinity);
    if (lo >= hi) return;
    const levels = this.#levels;
    const ways = this.ways;
    const tags = this.#domain;
    const bases = this.#base;
    const lvls = this.#level;
    // Sets to probe: the leaves of each level that hold entries of the domain and overlap [lo, hi).
    let probes = 0;
    for (const level of levels) {
      if (valid[d4 + level] === 0) continue;
      const sz = LEVEL_SIZE[level] ?? 1;
      probes += Math.floor((hi - 1) / sz) - Math.floor(lo / sz) + 1;
    }
    if (probes * ways <= this.capacity) {
      for (const level of levels) {
        if (valid[d4 + level] === 0) continue;
        const sz = LEVEL_SIZE[level] ?? 1;
        // Leaves are at most 1 GiB: the offset of lo inside one is in its low 32 bits.
        for (let base = lo - ((lo >>> 0) & (LEVEL_MASK[level] ?? 0)); base < hi; base += sz) {
          const first = this.#setOf(domain, base, level) * ways;
          for (let j = first; j < first + ways; j++) {
            if (tags[j] === domain && bases[j] === base && lvls[j] === level) {
              if (drop) this.#drop(j);
              else this.#stale[j] = 1;
            }
          }
          // Every entry of this level dropped: the rest of the range holds none.
          if (drop && valid[d4 + level] === 0) break;
        }
      }
      return;
    }
    for (let j = 0; j < this.capacity && remaining > 0; j++) {
      if (tags[j] !== domain) continue;
      remaining--;
      const base = bases[j] ?? 0;
      if (base < end && base + (LEVEL_SIZE[lvls[j] ?? 0] ?? 0) > start) {
        if (drop) this.#drop(j);
        else this.#stale[j] = 1;
      }
    }
  }

  /** Removes the entry in `slot` from its domain's counts; resets the domain's interval when empty. */
  #uncount(slot: number): void {
    const domain = this.#domain[slot] ?? 0;
    const d4 = domain * 4;
    const valid = this.#valid;
    const total = (valid[d4] ?? 0) - 1;
    valid[d4] = total;
    const l = d4 + (this.#level[slot] ?? 0);
    valid[l] = (valid[l] ?? 0) - 1;
    if (total === 0) {
      this.#lo[domain] = Infinity;
      this.#hi[domain] = -Infinity;
      this.#setHeld(domain, false);
    }
  }

  #drop(slot: number): void {
    this.#uncount(slot);
    this.#domain[slot] = 0;
    this.#stale[slot] = 0;
    this.#size--;
  }

  #growDomains(domain: number): void {
    let n = this.#lo.length;
    while (n <= domain) n *= 2;
    const valid = new Int32Array(n * 4);
    valid.set(this.#valid);
    const lo = new Float64Array(n).fill(Infinity);
    lo.set(this.#lo);
    const hi = new Float64Array(n).fill(-Infinity);
    hi.set(this.#hi);
    this.#valid = valid;
    this.#lo = lo;
    this.#hi = hi;
  }
}
