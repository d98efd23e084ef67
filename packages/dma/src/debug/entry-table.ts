/**
 * dma-debug's live entries (the hash buckets of struct dma_debug_entry in kernel/dma/debug.c) as a table
 * of typed-array columns: no object per mapping, one layout for every kernel and every entry type, so the
 * map and unmap paths that read it stay monomorphic whatever configurations ran before. A slot is the
 * index of an entry; entries are found by (device, DMA address) through chained hash buckets, as upstream
 * hashes dev_addr (hash_fn) and walks the bucket's list.
 *
 * Columns are allocated in chunks of CHUNK slots and never copied, so a table of n entries holds at most
 * one partly used chunk beyond them (no doubling). What a per-page mapping costs here: 3 × 8 bytes of
 * addresses and size, 4 of insertion order, 4 of bucket chain, 2 of device, 1 of type, direction and
 * flags, and a bucket of 4 bytes per entry at most — about 40 bytes.
 */

/** dma-debug's entry types (type2name in kernel/dma/debug.c). */
export type DebugEntryType = "single" | "phy" | "scatter-gather" | "coherent";

/** Entry type codes, in the order of TYPE_NAMES. */
export const TYPE_SINGLE = 0;
export const TYPE_PHY = 1;
export const TYPE_SG = 2;
export const TYPE_COHERENT = 3;
export const TYPE_NAMES: readonly DebugEntryType[] = ["single", "phy", "scatter-gather", "coherent"];

export function typeCode(type: DebugEntryType): number {
  return type === "phy" ? TYPE_PHY : type === "scatter-gather" ? TYPE_SG : type === "coherent" ? TYPE_COHERENT : TYPE_SINGLE;
}

// The info byte: type (bits 0-1), direction (bits 2-3), then flags.
const INFO_TYPE = 0x3;
const INFO_DIR_SHIFT = 2;
/** dma_mapping_error() was called on the address since it was mapped. */
export const INFO_CHECKED = 0x10;
/** Inserted into the active-cacheline table as cache-clean. */
export const INFO_CLEAN = 0x20;
/** Holds its own [phys, phys + size) in the active-cacheline table. */
export const INFO_TRACKED = 0x40;
/** Holds the cacheline ranges kept in the table's side map instead (scatterlists). */
export const INFO_LINES = 0x80;

const SHIFT = 10;
const CHUNK = 1 << SHIFT;
const MASK = CHUNK - 1;
/** No slot, in the chain and bucket columns (which hold slot + 1). */
const END = 0;

/** CHUNK slots of every column. */
class Chunk {
  readonly addr: Float64Array;
  readonly size: Float64Array;
  readonly phys: Float64Array;
  readonly seq: Uint32Array;
  /** Next slot + 1 in the same bucket, or in the free list. */
  readonly next: Int32Array;
  readonly dev: Uint16Array;
  readonly info: Uint8Array;

  constructor(n: number) {
    this.addr = new Float64Array(n);
    this.size = new Float64Array(n);
    this.phys = new Float64Array(n);
    this.seq = new Uint32Array(n);
    this.next = new Int32Array(n);
    this.dev = new Uint16Array(n);
    this.info = new Uint8Array(n);
  }
}

/**
 * Stands for a chunk that does not exist (a slot never handed out): its columns have no elements, so
 * reads give undefined (read as 0) and writes go nowhere; it holds no state.
 */
const NO_CHUNK = new Chunk(0);

export class DebugEntryTable {
  readonly #chunks: Chunk[] = [];
  /** sg entries only: [nents passed to map, entries map returned]. */
  readonly #sg = new Map<number, readonly [number, number]>();
  /** INFO_LINES entries only: their cacheline ranges as [first, last] pairs. */
  readonly #lines = new Map<number, readonly number[]>();
  #buckets = new Int32Array(64);
  #bits = 6;
  #slots = 0;
  #free = END;
  #live = 0;
  #order = 0;
  readonly #devIds = new Map<string, number>();
  readonly #devNames: string[] = [];

  /** Entries held. */
  get count(): number {
    return this.#live;
  }

  /** The id of a device name, made on first use. */
  deviceId(name: string): number {
    let id = this.#devIds.get(name);
    if (id === undefined) {
      id = this.#devNames.length;
      this.#devNames.push(name);
      this.#devIds.set(name, id);
    }
    return id;
  }

  /** The id of a device name, or -1 when it never had an entry. */
  findDevice(name: string): number {
    return this.#devIds.get(name) ?? -1;
  }

  deviceName(id: number): string {
    return this.#devNames[id] ?? "";
  }

  #hash(dev: number, addr: number): number {
    // Low and high 32 bits of the address (an integer >= 0 below 2^53; anything else only fails to match).
    const lo = addr >>> 0;
    const hi = (addr / 4294967296) >>> 0;
    return Math.imul(lo ^ Math.imul(hi, 0x27d4eb2d) ^ Math.imul(dev + 1, 0x165667b1), 0x9e3779b1) >>> (32 - this.#bits);
  }

  /** Adds an entry; returns its slot. Same-address entries of a device stay in insertion order. */
  add(dev: number, type: number, addr: number, size: number, phys: number, dir: number, flags: number): number {
    let s = this.#free - 1;
    if (s >= 0) this.#free = this.#chunk(s).next[s & MASK] ?? END;
    else {
      s = this.#slots++;
      if ((s & MASK) === 0) this.#addChunk();
    }
    const k = this.#chunk(s);
    const i = s & MASK;
    k.addr[i] = addr;
    k.size[i] = size;
    k.phys[i] = phys;
    k.seq[i] = this.#order++;
    k.dev[i] = dev;
    k.info[i] = type | (dir << INFO_DIR_SHIFT) | flags;
    k.next[i] = END;
    if (++this.#live > this.#buckets.length) this.#rehash(this.#bits + 1);
    this.#link(s);
    return s;
  }

  /** Appends slot s at the end of its bucket's chain. */
  #link(s: number): void {
    const b = this.#hash(this.dev(s), this.addr(s));
    const head = this.#buckets[b] ?? END;
    if (head === END) {
      this.#buckets[b] = s + 1;
      return;
    }
    let t = head - 1;
    for (;;) {
      const n = this.#chunk(t).next[t & MASK] ?? END;
      if (n === END) break;
      t = n - 1;
    }
    this.#chunk(t).next[t & MASK] = s + 1;
  }

  /** The chunk of slot s. */
  #chunk(s: number): Chunk {
    return this.#chunks[s >>> SHIFT] ?? NO_CHUNK;
  }

  #addChunk(): void {
    this.#chunks.push(new Chunk(CHUNK));
  }

  #rehash(bits: number): void {
    const live: number[] = [];
    this.forEach(-1, (s) => live.push(s));
    this.#bits = bits;
    this.#buckets = new Int32Array(1 << bits);
    for (const s of live) {
      this.#chunk(s).next[s & MASK] = END;
      this.#link(s);
    }
  }

  /** The oldest entry of `dev` at `addr`, or -1. */
  first(dev: number, addr: number): number {
    let n = this.#buckets[this.#hash(dev, addr)] ?? END;
    while (n !== END) {
      const s = n - 1;
      const k = this.#chunk(s);
      const i = s & MASK;
      if (k.addr[i] === addr && k.dev[i] === dev) return s;
      n = k.next[i] ?? END;
    }
    return -1;
  }

  /**
   * The entry of `dev` at `addr` with this size, type and direction (bucket_find_exact), else the oldest
   * at `addr`; -1 when there is none.
   */
  findExact(dev: number, addr: number, size: number, type: number, dir: number): number {
    const info = type | (dir << INFO_DIR_SHIFT);
    let n = this.#buckets[this.#hash(dev, addr)] ?? END;
    let oldest = -1;
    while (n !== END) {
      const s = n - 1;
      const k = this.#chunk(s);
      const i = s & MASK;
      if (k.addr[i] === addr && k.dev[i] === dev) {
        if (k.size[i] === size && ((k.info[i] ?? 0) & (INFO_TYPE | (3 << INFO_DIR_SHIFT))) === info) return s;
        if (oldest < 0) oldest = s;
      }
      n = k.next[i] ?? END;
    }
    return oldest;
  }

  /** Every other entry of `dev` at `addr` after slot `s` (for markChecked), or -1. */
  nextSame(s: number): number {
    const dev = this.dev(s);
    const addr = this.addr(s);
    let n = this.#chunk(s).next[s & MASK] ?? END;
    while (n !== END) {
      const t = n - 1;
      if (this.addr(t) === addr && this.dev(t) === dev) return t;
      n = this.#chunk(t).next[t & MASK] ?? END;
    }
    return -1;
  }

  /** Removes slot s. */
  remove(s: number): void {
    const b = this.#hash(this.dev(s), this.addr(s));
    const k = this.#chunk(s);
    const i = s & MASK;
    const after = k.next[i] ?? END;
    let n = this.#buckets[b] ?? END;
    if (n === s + 1) this.#buckets[b] = after;
    else {
      while (n !== END) {
        const t = n - 1;
        const tn = this.#chunk(t).next[t & MASK] ?? END;
        if (tn === s + 1) {
          this.#chunk(t).next[t & MASK] = after;
          break;
        }
        n = tn;
      }
    }
    k.info[i] = 0;
    if (this.#sg.size > 0) this.#sg.delete(s);
    if (this.#lines.size > 0) this.#lines.delete(s);
    k.next[i] = this.#free;
    this.#free = s + 1;
    this.#live--;
  }

  /** Calls fn for every entry of `dev` (every entry for -1), oldest first. */
  forEach(dev: number, fn: (s: number) => void): void {
    const found: number[] = [];
    for (const head of this.#buckets) {
      for (let n = head; n !== END; n = this.#chunk(n - 1).next[(n - 1) & MASK] ?? END) {
        if (dev < 0 || this.dev(n - 1) === dev) found.push(n - 1);
      }
    }
    // Insertion order (the counter wraps after 2^32 entries; only the order of a listing would suffer).
    found.sort((a, b) => this.seq(a) - this.seq(b));
    for (const s of found) fn(s);
  }

  addr(s: number): number {
    return this.#chunk(s).addr[s & MASK] ?? 0;
  }

  size(s: number): number {
    return this.#chunk(s).size[s & MASK] ?? 0;
  }

  phys(s: number): number {
    return this.#chunk(s).phys[s & MASK] ?? 0;
  }

  dev(s: number): number {
    return this.#chunk(s).dev[s & MASK] ?? 0;
  }

  seq(s: number): number {
    return this.#chunk(s).seq[s & MASK] ?? 0;
  }

  info(s: number): number {
    return this.#chunk(s).info[s & MASK] ?? 0;
  }

  type(s: number): number {
    return this.info(s) & INFO_TYPE;
  }

  dir(s: number): number {
    return (this.info(s) >>> INFO_DIR_SHIFT) & 3;
  }

  setFlag(s: number, flag: number): void {
    const info = this.#chunk(s).info;
    info[s & MASK] = (info[s & MASK] ?? 0) | flag;
  }

  clearFlag(s: number, flag: number): void {
    const info = this.#chunk(s).info;
    info[s & MASK] = (info[s & MASK] ?? 0) & ~flag;
  }

  setSg(s: number, sgCount: number, sgMappedEnts: number): void {
    this.#sg.set(s, [sgCount, sgMappedEnts]);
  }

  sgCount(s: number): number {
    return this.#sg.get(s)?.[0] ?? 0;
  }

  sgMappedEnts(s: number): number {
    return this.#sg.get(s)?.[1] ?? 0;
  }

  setLines(s: number, lines: readonly number[]): void {
    this.#lines.set(s, lines);
  }

  lines(s: number): readonly number[] | undefined {
    return this.#lines.get(s);
  }
}
