import { PAGE_SIZE, checkNat } from "./addresses.js";
import { AddressError } from "./errors.js";

/** Pages per leaf of the page index: one Int32Array of 512 slots covers 2 MiB of the store. */
const LEAF_PAGES = 512;
/** Pages per slab: materialised pages are carved from 256 KiB buffers, so there is no object per page. */
const SLAB_SHIFT = 6;
const SLAB_PAGES = 1 << SLAB_SHIFT;
const SLAB_MASK = SLAB_PAGES - 1;

/**
 * The bytes of a range of `size` bytes, stored sparsely: a 4 KiB page gets memory on its first write and
 * unwritten bytes read as zeros, so a terabyte of RAM costs nothing until it is used.
 *
 * Layout: page number → slot through a two-level index (a Map of 512-entry Int32Array leaves, with the last
 * leaf cached so sequential access skips the Map); slot → bytes inside a 256 KiB slab. Slots are handed
 * out in materialisation order, so a buffer written front to back sits contiguously in its slabs.
 * Pages are never given back: like RAM, once touched the bytes stay.
 */
export class SparseStore {
  readonly size: number;
  readonly #leaves = new Map<number, Int32Array>();
  #lastLeafIndex = -1;
  #lastLeaf: Int32Array | undefined = undefined;
  readonly #slabs: Uint8Array[] = [];
  #pages = 0;

  constructor(size: number) {
    checkNat("size", size);
    this.size = size;
  }

  /** Pages that have been written at least once and so hold memory. */
  get materialisedPages(): number {
    return this.#pages;
  }

  /** True when the page holding byte `offset` has memory (was written). */
  isMaterialised(offset: number): boolean {
    this.#check(offset, 1, "isMaterialised");
    return this.#slot(Math.floor(offset / PAGE_SIZE)) >= 0;
  }

  read(offset: number, len: number): Uint8Array {
    this.#check(offset, len, "read");
    const out = new Uint8Array(len);
    this.#copyOut(offset, out);
    return out;
  }

  readInto(offset: number, dst: Uint8Array): void {
    const len = dst.length;
    // Fast path for the common case, an access inside one page (a TLP never crosses 4 KiB).
    if (offset >= 0 && offset + len <= this.size && Number.isSafeInteger(offset)) {
      const page = Math.floor(offset / PAGE_SIZE);
      const inPage = offset - page * PAGE_SIZE;
      if (inPage + len <= PAGE_SIZE) {
        const slot = this.#slot(page);
        if (slot < 0) {
          dst.fill(0);
        } else {
          const base = (slot & SLAB_MASK) * PAGE_SIZE + inPage;
          dst.set(this.#slab(slot).subarray(base, base + len));
        }
        return;
      }
    }
    this.#check(offset, len, "readInto");
    this.#copyOut(offset, dst);
  }

  write(offset: number, bytes: Uint8Array): void {
    const len = bytes.length;
    if (len > 0 && offset >= 0 && offset + len <= this.size && Number.isSafeInteger(offset)) {
      const page = Math.floor(offset / PAGE_SIZE);
      const inPage = offset - page * PAGE_SIZE;
      if (inPage + len <= PAGE_SIZE) {
        const slot = this.#materialise(page);
        this.#slab(slot).set(bytes, (slot & SLAB_MASK) * PAGE_SIZE + inPage);
        return;
      }
    }
    this.#check(offset, len, "write");
    let pos = 0;
    while (pos < len) {
      const at = offset + pos;
      const page = Math.floor(at / PAGE_SIZE);
      const inPage = at - page * PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - inPage, len - pos);
      const slot = this.#materialise(page);
      const slab = this.#slab(slot);
      const base = (slot & SLAB_MASK) * PAGE_SIZE + inPage;
      if (n === len) slab.set(bytes, base);
      else slab.set(bytes.subarray(pos, pos + n), base);
      pos += n;
    }
  }

  /** memset(): zero-fill of a page that was never written changes nothing and allocates nothing. */
  fill(offset: number, len: number, value: number): void {
    this.#check(offset, len, "fill");
    if (!Number.isInteger(value) || value < 0 || value > 255) throw new AddressError("value", value, "a byte value 0..255");
    let pos = 0;
    while (pos < len) {
      const at = offset + pos;
      const page = Math.floor(at / PAGE_SIZE);
      const inPage = at - page * PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - inPage, len - pos);
      const slot = value === 0 ? this.#slot(page) : this.#materialise(page);
      if (slot >= 0) {
        const base = (slot & SLAB_MASK) * PAGE_SIZE + inPage;
        this.#slab(slot).fill(value, base, base + n);
      }
      pos += n;
    }
  }

  #check(offset: number, len: number, fn: string): void {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new AddressError("offset", offset, `a safe integer >= 0 (SparseStore.${fn})`);
    checkNat("len", len);
    if (offset + len > this.size) {
      throw new AddressError("offset", offset, `offset + len (${len}) <= the store size ${this.size} (SparseStore.${fn})`);
    }
  }

  #copyOut(offset: number, dst: Uint8Array): void {
    const len = dst.length;
    let pos = 0;
    while (pos < len) {
      const at = offset + pos;
      const page = Math.floor(at / PAGE_SIZE);
      const inPage = at - page * PAGE_SIZE;
      let n = Math.min(PAGE_SIZE - inPage, len - pos);
      const slot = this.#slot(page);
      if (slot < 0) {
        dst.fill(0, pos, pos + n);
      } else {
        // Pages written in order sit next to each other in a slab: copy such a run in one go.
        let next = slot + 1;
        while (pos + n < len && (next & SLAB_MASK) !== 0 && this.#slot(page + (next - slot)) === next) {
          n = Math.min(n + PAGE_SIZE, len - pos);
          next++;
        }
        const base = (slot & SLAB_MASK) * PAGE_SIZE + inPage;
        dst.set(this.#slab(slot).subarray(base, base + n), pos);
      }
      pos += n;
    }
  }

  /**
   * memcpy from `src` (another store, or this one over a range that does not overlap) into this store:
   * the source bytes go straight into this store's slabs, one copy per byte and one `set` per run of
   * slab-contiguous pages, with no intermediate buffer. Destination pages are materialised in order.
   */
  copyFrom(src: SparseStore, srcOffset: number, offset: number, len: number): void {
    this.#check(offset, len, "copyFrom");
    src.#check(srcOffset, len, "copyFrom");
    if (src === this && srcOffset < offset + len && offset < srcOffset + len) {
      throw new AddressError("offset", offset, `a destination that does not overlap the source [${srcOffset}, ${srcOffset + len}) (SparseStore.copyFrom)`);
    }
    let pos = 0;
    while (pos < len) {
      const at = offset + pos;
      const page = Math.floor(at / PAGE_SIZE);
      const inPage = at - page * PAGE_SIZE;
      let n = Math.min(PAGE_SIZE - inPage, len - pos);
      const slot = this.#materialise(page);
      // Extend the run over the following pages while they sit in the next slots of the same slab
      // (materialising them in order when they are new).
      let next = slot + 1;
      while (pos + n < len && (next & SLAB_MASK) !== 0) {
        const p2 = page + (next - slot);
        let s2 = this.#slot(p2);
        if (s2 < 0 && this.#pages === next) s2 = this.#materialise(p2);
        if (s2 !== next) break;
        n = Math.min(n + PAGE_SIZE, len - pos);
        next++;
      }
      const base = (slot & SLAB_MASK) * PAGE_SIZE + inPage;
      src.#copyOut(srcOffset + pos, this.#slab(slot).subarray(base, base + n));
      pos += n;
    }
  }

  /** Slot of `page`, or -1 when it was never written. */
  #slot(page: number): number {
    const leafIndex = Math.floor(page / LEAF_PAGES);
    let leaf = this.#lastLeaf;
    if (leafIndex !== this.#lastLeafIndex) {
      leaf = this.#leaves.get(leafIndex);
      this.#lastLeafIndex = leafIndex;
      this.#lastLeaf = leaf;
    }
    if (leaf === undefined) return -1;
    return (leaf[page - leafIndex * LEAF_PAGES] ?? 0) - 1;
  }

  #slab(slot: number): Uint8Array {
    const slab = this.#slabs[slot >>> SLAB_SHIFT];
    if (slab === undefined) throw new Error(`SparseStore: slot ${slot} has no slab (internal inconsistency)`);
    return slab;
  }

  #materialise(page: number): number {
    const slot = this.#slot(page);
    if (slot >= 0) return slot;
    const leafIndex = Math.floor(page / LEAF_PAGES);
    let leaf = this.#lastLeaf;
    if (leaf === undefined) {
      leaf = new Int32Array(LEAF_PAGES);
      this.#leaves.set(leafIndex, leaf);
      this.#lastLeaf = leaf;
    }
    const fresh = this.#pages++;
    if ((fresh & SLAB_MASK) === 0) this.#slabs.push(new Uint8Array(SLAB_PAGES * PAGE_SIZE));
    leaf[page - leafIndex * LEAF_PAGES] = fresh + 1;
    return fresh;
  }
}
