import { PAGE_SIZE, checkNat } from "./addresses.js";
import { AddressError } from "./errors.js";
import { kReadIntoChecked, kWriteChecked } from "./internal.js";

/** Pages per leaf of the page index: one Int32Array of 512 slots covers 2 MiB of the store. */
const LEAF_PAGES = 512;
/** Pages per slab: whole pages are carved from 256 KiB buffers, so there is no object per page. */
const SLAB_SHIFT = 6;
const SLAB_PAGES = 1 << SLAB_SHIFT;
const SLAB_MASK = SLAB_PAGES - 1;
/** A partly written page holds its bytes in 64-byte lines (a CPU cache line): 64 per page. */
const LINE_SHIFT = 6;
const LINE_SIZE = 1 << LINE_SHIFT;
const LINES_PER_PAGE = PAGE_SIZE / LINE_SIZE;
const LINES_PER_PAGE_SHIFT = Math.log2(LINES_PER_PAGE);
/** Lines per line slab (256 KiB, like a page slab). */
const LINE_SLAB_SHIFT = 12;
const LINE_SLAB_MASK = (1 << LINE_SLAB_SHIFT) - 1;
/** A line page that would hold more than this many lines (2 KiB) becomes a whole page (lines cost more then). */
const MAX_LINES = 32;
/**
 * Entries below -SINGLE_BASE are pages holding exactly one line, kept in the entry itself (no line table):
 * `-(SINGLE_BASE + line * LINES_PER_PAGE + l + 1)` for line `line` at position `l` of the page. Entries
 * from -SINGLE_BASE to -1 are `-(table + 1)` (2^30 tables would be 256 GiB of them: never reached). A line
 * whose number does not fit (past 2^24 lines, 1 GiB of them) goes through a table instead.
 */
const SINGLE_BASE = 2 ** 30;
const SINGLE_MAX_LINE = SINGLE_BASE / LINES_PER_PAGE - 1;
/**
 * Accesses of at most this many bytes may take the short-access seam: their bytes are copied without a
 * `subarray` view (see writeBytes and readBytes), and a write into a line the page already has, or into a
 * page never written, skips the scan of the page's line table.
 */
const SHORT_ACCESS_BYTES = 64;
/**
 * Writes of at least this many bytes on the short-access seam copy with `set` of the whole source (no
 * view is made: the source is the caller's buffer as it is); shorter ones by the byte loop, which beats
 * `set`'s call below 16 bytes (8 bytes: 8 ns against 11; 64 bytes: 11 ns against 35, one core, a Node
 * script alternating two sources over a 256 KiB slab).
 */
const SET_MIN_BYTES = 16;
/** Line tables per chunk: 1024 pages x 64 Int32 line slots = 256 KiB. */
const TABLE_CHUNK_SHIFT = 10;
const TABLE_CHUNK_MASK = (1 << TABLE_CHUNK_SHIFT) - 1;

/**
 * The bytes of a range of `size` bytes, stored sparsely: a page gets memory on its first write and
 * unwritten bytes read as zeros, so a terabyte of RAM costs nothing until it is used.
 *
 * Layout: page number → entry through a two-level index (a Map of 512-entry Int32Array leaves, with the
 * last leaf cached so sequential access skips the Map). An entry is 0 for a page never written, `slot + 1`
 * for a whole page (4 KiB inside a 256 KiB slab; slots are handed out in materialisation order, so a
 * buffer written front to back sits contiguously), or, for a page written only in places, its 64-byte
 * lines: one line is named by the entry itself (below -SINGLE_BASE), more are found through a table of
 * 64 line slots (`-(table + 1)`). A device that writes a 64-byte pattern into each of a million fresh
 * pages so costs 64 MiB of host memory, not 4 GiB, and the host does not fault in and zero a 4 KiB page
 * for every one (that was most of the time of such a run); nor a line table (256 B) per page, which with
 * the 256-byte lines this store had before made 320 MiB of fresh memory the host faulted in, and the
 * garbage collector ran full collections for. A page becomes whole once it would need more than 32
 * lines; its lines and table are reused.
 * Pages are never given back: like RAM, once touched the bytes stay.
 */
export class SparseStore {
  /** Bytes in the range; offsets run from 0 to size. */
  readonly size: number;
  readonly #leaves = new Map<number, Int32Array>();
  #lastLeafIndex = -1;
  #lastLeaf: Int32Array | undefined = undefined;
  /**
   * The leaf used before the last one: accesses that alternate between two leaves (a device reading a
   * buffer page by page and writing its one staging page) find both here rather than probing the Map.
   */
  #prevLeafIndex = -1;
  #prevLeaf: Int32Array | undefined = undefined;
  readonly #slabs: Uint8Array[] = [];
  /** A DataView of each slab and line slab (made with it): the short reads take 4 bytes a load. */
  readonly #slabViews: DataView[] = [];
  readonly #lineSlabViews: DataView[] = [];
  #pages = 0;
  #wholePages = 0;
  readonly #lineSlabs: Uint8Array[] = [];
  #lines = 0;
  readonly #tables: Int32Array[] = [];
  #tableCount = 0;
  /** Line tables and lines given back by pages that became whole, for reuse. */
  readonly #freeTables: number[] = [];
  readonly #freeLines: number[] = [];

  constructor(size: number) {
    checkNat("size", size);
    this.size = size;
  }

  /** Pages that have been written at least once and so hold memory. */
  get materialisedPages(): number {
    return this.#pages;
  }

  /** Host bytes that hold written data: whole pages plus 64-byte lines (index structures not counted). */
  get storedBytes(): number {
    return this.#wholePages * PAGE_SIZE + (this.#lines - this.#freeLines.length) * LINE_SIZE;
  }

  /** True when the page holding byte `offset` has memory (was written). */
  isMaterialised(offset: number): boolean {
    this.#check(offset, 1, "isMaterialised");
    return this.#entry(Math.floor(offset / PAGE_SIZE)) !== 0;
  }

  /** A copy of `len` bytes at `offset` (zeros where never written). */
  read(offset: number, len: number): Uint8Array {
    this.#check(offset, len, "read");
    const out = new Uint8Array(len);
    this.#copyOut(offset, out);
    return out;
  }

  /** Fills `dst` with the bytes at `offset`, without allocating a result. */
  readInto(offset: number, dst: Uint8Array): void {
    if (dst.length <= SHORT_ACCESS_BYTES && this.#readShortNoView(offset, dst)) return;
    this[kReadIntoChecked](offset, dst);
  }

  /** Stores `bytes` at `offset`, giving memory to the pages they touch. */
  write(offset: number, bytes: Uint8Array): void {
    if (bytes.length <= SHORT_ACCESS_BYTES && this.#writeShortNoScan(offset, bytes)) return;
    this[kWriteChecked](offset, bytes);
  }

  // ---- the short-access seam ------------------------------------------------------------------------
  // readInto and write try these first and run the checked path (below) for whatever they decline. They
  // do exactly what the checked path does for the accesses they admit; sparse-store-short.test.ts holds
  // the two to that (same bytes, same pages, same stored bytes, same errors).

  /**
   * readInto of at most SHORT_ACCESS_BYTES inside one page (and inside one 64-byte line of a line page),
   * straight from the slab or line (no line-table scan, no `subarray` view). Returns false, having written nothing, for any other access
   * (crossing a page or a line, out of range, not a safe integer offset, empty).
   */
  #readShortNoView(offset: number, dst: Uint8Array): boolean {
    const len = dst.length;
    if (!(len > 0 && offset >= 0 && offset + len <= this.size && Number.isSafeInteger(offset))) return false;
    const page = Math.floor(offset / PAGE_SIZE);
    const inPage = offset - page * PAGE_SIZE;
    if (inPage + len > PAGE_SIZE) return false;
    const e = this.#entry(page);
    if (e > 0) {
      const slot = e - 1;
      readBytes(this.#slabView(slot), (slot & SLAB_MASK) * PAGE_SIZE + inPage, dst, len);
      return true;
    }
    if (e === 0) {
      for (let i = 0; i < len; i++) dst[i] = 0;
      return true;
    }
    const inLine = inPage & (LINE_SIZE - 1);
    if (inLine + len > LINE_SIZE) return false;
    const v = this.#lineOf(e, inPage >>> LINE_SHIFT);
    if (v === 0) {
      for (let i = 0; i < len; i++) dst[i] = 0;
      return true;
    }
    const line = v - 1;
    readBytes(this.#lineSlabView(line), (line & LINE_SLAB_MASK) * LINE_SIZE + inLine, dst, len);
    return true;
  }

  /**
   * write of at most SHORT_ACCESS_BYTES inside one page: into a whole page, into a line a line page
   * already holds (no scan of its line table), or into a page never written, which gets its one line
   * (no scan either: it has no other lines). Returns false, having changed nothing, when the
   * write needs a line the page lacks (the checked path counts its lines first), crosses a page or a line,
   * or is out of range, empty or at an offset that is not a safe integer.
   */
  #writeShortNoScan(offset: number, bytes: Uint8Array): boolean {
    const len = bytes.length;
    if (!(len > 0 && offset >= 0 && offset + len <= this.size && Number.isSafeInteger(offset))) return false;
    const page = Math.floor(offset / PAGE_SIZE);
    const inPage = offset - page * PAGE_SIZE;
    if (inPage + len > PAGE_SIZE) return false;
    const e = this.#entry(page);
    if (e > 0) {
      const slot = e - 1;
      writeBytes(bytes, this.#slab(slot), (slot & SLAB_MASK) * PAGE_SIZE + inPage, len);
      return true;
    }
    const inLine = inPage & (LINE_SIZE - 1);
    if (inLine + len > LINE_SIZE) return false;
    let line: number;
    if (e === 0) {
      // A page never written gets its one line, taken as #writeLines takes it.
      this.#pages++;
      line = this.#freeLines.pop() ?? this.#newLine();
      this.#setEntry(page, line <= SINGLE_MAX_LINE ? -(SINGLE_BASE + line * LINES_PER_PAGE + (inPage >>> LINE_SHIFT) + 1) : this.#tableWith(inPage >>> LINE_SHIFT, line));
    } else {
      const v = this.#lineOf(e, inPage >>> LINE_SHIFT);
      if (v === 0) return false;
      line = v - 1;
    }
    writeBytes(bytes, this.#lineSlab(line), (line & LINE_SLAB_MASK) * LINE_SIZE + inLine, len);
    return true;
  }

  // ---- the checked path -----------------------------------------------------------------------------

  /** Package-private (a symbol `.` does not export): readInto without the short-access seam (the equivalence test compares the two). */
  [kReadIntoChecked](offset: number, dst: Uint8Array): void {
    const len = dst.length;
    // Fast path for the common case, an access inside one page (a TLP never crosses 4 KiB).
    if (offset >= 0 && offset + len <= this.size && Number.isSafeInteger(offset)) {
      const page = Math.floor(offset / PAGE_SIZE);
      const inPage = offset - page * PAGE_SIZE;
      if (inPage + len <= PAGE_SIZE) {
        const e = this.#entry(page);
        if (e > 0) {
          const slot = e - 1;
          const base = (slot & SLAB_MASK) * PAGE_SIZE + inPage;
          dst.set(this.#slab(slot).subarray(base, base + len));
        } else if (e === 0) {
          dst.fill(0);
        } else {
          this.#readLines(e, inPage, dst, 0, len);
        }
        return;
      }
    }
    this.#check(offset, len, "readInto");
    this.#copyOut(offset, dst);
  }

  /** Package-private (a symbol `.` does not export): write without the short-access seam (the equivalence test compares the two). */
  [kWriteChecked](offset: number, bytes: Uint8Array): void {
    const len = bytes.length;
    if (len > 0 && offset >= 0 && offset + len <= this.size && Number.isSafeInteger(offset)) {
      const page = Math.floor(offset / PAGE_SIZE);
      const inPage = offset - page * PAGE_SIZE;
      if (inPage + len <= PAGE_SIZE) {
        const e = this.#entry(page);
        if (e > 0) {
          const slot = e - 1;
          this.#slab(slot).set(bytes, (slot & SLAB_MASK) * PAGE_SIZE + inPage);
        } else {
          this.#writePage(page, e, inPage, bytes, 0, len, -1);
        }
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
      this.#writePage(page, this.#entry(page), inPage, bytes, pos, n, -1);
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
      const e = this.#entry(page);
      if (value !== 0 || e > 0) this.#writePage(page, e, inPage, undefined, 0, n, value);
      else if (e < 0) this.#zeroLines(e, inPage, n);
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
      const e = this.#entry(page);
      if (e === 0) {
        dst.fill(0, pos, pos + n);
      } else if (e < 0) {
        this.#readLines(e, inPage, dst, pos, n);
      } else {
        // Whole pages written in order sit next to each other in a slab: copy such a run in one go.
        const slot = e - 1;
        let next = slot + 1;
        while (pos + n < len && (next & SLAB_MASK) !== 0 && this.#entry(page + (next - slot)) === next + 1) {
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
   * memcpy from `src` (another store, or this one over a range that does not overlap) into this store.
   * A destination page copied whole gets a whole slot and the source bytes go straight into it, one
   * `set` per run of slab-contiguous slots, with no intermediate buffer; a page copied in part goes
   * through the ordinary write path (lines or a whole page, as a write would choose).
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
      if (n < PAGE_SIZE) {
        const part = new Uint8Array(n);
        src.#copyOut(srcOffset + pos, part);
        this.#writePage(page, this.#entry(page), inPage, part, 0, n, -1);
        pos += n;
        continue;
      }
      const slot = this.#wholeSlot(page);
      // Extend the run over following whole-page copies whose slots are the next ones of the same slab
      // (new pages get them when they are taken in order).
      let next = slot + 1;
      while (len - pos - n >= PAGE_SIZE && (next & SLAB_MASK) !== 0) {
        const p2 = page + (next - slot);
        const e2 = this.#entry(p2);
        if (e2 === next + 1 || (e2 === 0 && this.#wholePages === next)) this.#wholeSlot(p2);
        else break;
        n += PAGE_SIZE;
        next++;
      }
      const base = (slot & SLAB_MASK) * PAGE_SIZE;
      src.#copyOut(srcOffset + pos, this.#slab(slot).subarray(base, base + n));
      pos += n;
    }
  }

  /** The whole-page slot of `page`, giving it one (and moving its lines there) when it has none. */
  #wholeSlot(page: number): number {
    let e = this.#entry(page);
    if (e <= 0) {
      if (e === 0) this.#pages++;
      e = this.#makeWhole(page, e);
    }
    return e - 1;
  }

  /** The index entry of `page`: 0 never written, > 0 whole page slot + 1, < 0 a line page (see SINGLE_BASE). */
  #entry(page: number): number {
    const leafIndex = Math.floor(page / LEAF_PAGES);
    let leaf = this.#lastLeaf;
    if (leafIndex !== this.#lastLeafIndex) leaf = this.#switchLeaf(leafIndex);
    if (leaf === undefined) return 0;
    return leaf[page - leafIndex * LEAF_PAGES] ?? 0;
  }

  /** Makes `leafIndex` the last leaf (the previous last one becomes the one before); returns it. */
  #switchLeaf(leafIndex: number): Int32Array | undefined {
    const leaf = leafIndex === this.#prevLeafIndex ? this.#prevLeaf : this.#leaves.get(leafIndex);
    this.#prevLeafIndex = this.#lastLeafIndex;
    this.#prevLeaf = this.#lastLeaf;
    this.#lastLeafIndex = leafIndex;
    this.#lastLeaf = leaf;
    return leaf;
  }

  #setEntry(page: number, value: number): void {
    const leafIndex = Math.floor(page / LEAF_PAGES);
    let leaf = leafIndex === this.#lastLeafIndex ? this.#lastLeaf : this.#switchLeaf(leafIndex);
    if (leaf === undefined) {
      leaf = new Int32Array(LEAF_PAGES);
      this.#leaves.set(leafIndex, leaf);
      this.#lastLeaf = leaf;
    }
    leaf[page - leafIndex * LEAF_PAGES] = value;
  }

  #slab(slot: number): Uint8Array {
    const slab = this.#slabs[slot >>> SLAB_SHIFT];
    if (slab === undefined) throw new Error(`SparseStore: slot ${slot} has no slab (internal inconsistency)`);
    return slab;
  }

  #slabView(slot: number): DataView {
    const view = this.#slabViews[slot >>> SLAB_SHIFT];
    if (view === undefined) throw new Error(`SparseStore: slot ${slot} has no slab (internal inconsistency)`);
    return view;
  }

  #lineSlabView(line: number): DataView {
    const view = this.#lineSlabViews[line >>> LINE_SLAB_SHIFT];
    if (view === undefined) throw new Error(`SparseStore: line ${line} has no slab (internal inconsistency)`);
    return view;
  }

  #lineSlab(line: number): Uint8Array {
    const slab = this.#lineSlabs[line >>> LINE_SLAB_SHIFT];
    if (slab === undefined) throw new Error(`SparseStore: line ${line} has no slab (internal inconsistency)`);
    return slab;
  }

  #table(table: number): Int32Array {
    const chunk = this.#tables[table >>> TABLE_CHUNK_SHIFT];
    if (chunk === undefined) throw new Error(`SparseStore: line table ${table} does not exist (internal inconsistency)`);
    return chunk;
  }

  /**
   * Writes `n` bytes at `inPage` of `page` (entry `e`): from `src` at `srcPos`, or the byte `value` when
   * `src` is undefined. Gives the page memory first if it has none, as lines when few are touched.
   */
  #writePage(page: number, e: number, inPage: number, src: Uint8Array | undefined, srcPos: number, n: number, value: number): void {
    if (e === 0) this.#pages++;
    if (e <= 0) {
      const first = inPage >>> LINE_SHIFT;
      const last = (inPage + n - 1) >>> LINE_SHIFT;
      let needed = last - first + 1;
      if (e < -SINGLE_BASE) {
        const l = (-e - SINGLE_BASE - 1) & (LINES_PER_PAGE - 1);
        if (l < first || l > last) needed++;
      } else if (e < 0) {
        const t = this.#table(-e - 1);
        const tb = ((-e - 1) & TABLE_CHUNK_MASK) * LINES_PER_PAGE;
        for (let l = 0; l < LINES_PER_PAGE; l++) if ((t[tb + l] ?? 0) !== 0 && (l < first || l > last)) needed++;
      }
      if (needed <= MAX_LINES) {
        this.#writeLines(page, e, inPage, src, srcPos, n, value);
        return;
      }
      e = this.#makeWhole(page, e);
    }
    const slot = e - 1;
    const slab = this.#slab(slot);
    const base = (slot & SLAB_MASK) * PAGE_SIZE + inPage;
    if (src === undefined) slab.fill(value, base, base + n);
    else slab.set(n === src.length ? src : src.subarray(srcPos, srcPos + n), base);
  }

  /** Gives `page` a whole 4 KiB slot, moving the lines it had there; returns its new entry. */
  #makeWhole(page: number, e: number): number {
    const slot = this.#wholePages++;
    if ((slot & SLAB_MASK) === 0) {
      const slab = new Uint8Array(SLAB_PAGES * PAGE_SIZE);
      this.#slabs.push(slab);
      this.#slabViews.push(new DataView(slab.buffer));
    }
    if (e < -SINGLE_BASE) {
      const code = -e - SINGLE_BASE - 1;
      this.#moveLine(code >>> LINES_PER_PAGE_SHIFT, slot, code & (LINES_PER_PAGE - 1));
    } else if (e < 0) {
      const table = -e - 1;
      const t = this.#table(table);
      const tb = (table & TABLE_CHUNK_MASK) * LINES_PER_PAGE;
      for (let l = 0; l < LINES_PER_PAGE; l++) {
        const v = t[tb + l] ?? 0;
        if (v === 0) continue;
        this.#moveLine(v - 1, slot, l);
        t[tb + l] = 0;
      }
      this.#freeTables.push(table);
    }
    this.#setEntry(page, slot + 1);
    return slot + 1;
  }

  /** Copies `line` to position `l` of whole-page slot `slot` and frees it (zeroed, so it reads as zeros when reused). */
  #moveLine(line: number, slot: number, l: number): void {
    const ls = this.#lineSlab(line);
    const lb = (line & LINE_SLAB_MASK) * LINE_SIZE;
    this.#slab(slot).set(ls.subarray(lb, lb + LINE_SIZE), (slot & SLAB_MASK) * PAGE_SIZE + l * LINE_SIZE);
    ls.fill(0, lb, lb + LINE_SIZE);
    this.#freeLines.push(line);
  }

  /** A line table (a reused one, or new) holding `line` at position `l`; returns the entry that names it. */
  #tableWith(l: number, line: number): number {
    const table = this.#freeTables.pop() ?? this.#newTable();
    this.#table(table)[(table & TABLE_CHUNK_MASK) * LINES_PER_PAGE + l] = line + 1;
    return -table - 1;
  }

  /** Line `l` of a line page with entry `e` (< 0): its line number + 1, or 0 when the page lacks it. */
  #lineOf(e: number, l: number): number {
    if (e < -SINGLE_BASE) {
      const code = -e - SINGLE_BASE - 1;
      return (code & (LINES_PER_PAGE - 1)) === l ? (code >>> LINES_PER_PAGE_SHIFT) + 1 : 0;
    }
    const table = -e - 1;
    return this.#table(table)[(table & TABLE_CHUNK_MASK) * LINES_PER_PAGE + l] ?? 0;
  }

  #writeLines(page: number, e: number, inPage: number, src: Uint8Array | undefined, srcPos: number, n: number, value: number): void {
    const first = inPage >>> LINE_SHIFT;
    if (e === 0 && ((inPage + n - 1) >>> LINE_SHIFT) === first) {
      // One line of a page never written: named by the entry, no table (when its number fits).
      const line = this.#freeLines.pop() ?? this.#newLine();
      this.#setEntry(page, line <= SINGLE_MAX_LINE ? -(SINGLE_BASE + line * LINES_PER_PAGE + first + 1) : this.#tableWith(first, line));
      const ls = this.#lineSlab(line);
      const lb = (line & LINE_SLAB_MASK) * LINE_SIZE + (inPage & (LINE_SIZE - 1));
      if (src === undefined) ls.fill(value, lb, lb + n);
      else ls.set(n === src.length ? src : src.subarray(srcPos, srcPos + n), lb);
      return;
    }
    let table: number;
    if (e < -SINGLE_BASE) {
      // A second line: the page's one line moves into a table.
      const code = -e - SINGLE_BASE - 1;
      const entry = this.#tableWith(code & (LINES_PER_PAGE - 1), code >>> LINES_PER_PAGE_SHIFT);
      this.#setEntry(page, entry);
      table = -entry - 1;
    } else if (e < 0) table = -e - 1;
    else {
      table = this.#freeTables.pop() ?? this.#newTable();
      this.#setEntry(page, -table - 1);
    }
    const t = this.#table(table);
    const tb = (table & TABLE_CHUNK_MASK) * LINES_PER_PAGE;
    let pos = 0;
    while (pos < n) {
      const at = inPage + pos;
      const l = at >>> LINE_SHIFT;
      const inLine = at & (LINE_SIZE - 1);
      const m = Math.min(LINE_SIZE - inLine, n - pos);
      let v = t[tb + l] ?? 0;
      if (v === 0) {
        v = (this.#freeLines.pop() ?? this.#newLine()) + 1;
        t[tb + l] = v;
      }
      const line = v - 1;
      const ls = this.#lineSlab(line);
      const lb = (line & LINE_SLAB_MASK) * LINE_SIZE + inLine;
      if (src === undefined) ls.fill(value, lb, lb + m);
      else ls.set(m === src.length ? src : src.subarray(srcPos + pos, srcPos + pos + m), lb);
      pos += m;
    }
  }

  /** Reads `n` bytes at `inPage` of the line page with entry `e` into `dst` at `dstPos`. */
  #readLines(e: number, inPage: number, dst: Uint8Array, dstPos: number, n: number): void {
    let pos = 0;
    while (pos < n) {
      const at = inPage + pos;
      const inLine = at & (LINE_SIZE - 1);
      const m = Math.min(LINE_SIZE - inLine, n - pos);
      const v = this.#lineOf(e, at >>> LINE_SHIFT);
      if (v === 0) dst.fill(0, dstPos + pos, dstPos + pos + m);
      else {
        const line = v - 1;
        const lb = (line & LINE_SLAB_MASK) * LINE_SIZE + inLine;
        dst.set(this.#lineSlab(line).subarray(lb, lb + m), dstPos + pos);
      }
      pos += m;
    }
  }

  /** Zero-fill inside a line page: lines it has are zeroed, lines it lacks already read as zeros. */
  #zeroLines(e: number, inPage: number, n: number): void {
    let pos = 0;
    while (pos < n) {
      const at = inPage + pos;
      const inLine = at & (LINE_SIZE - 1);
      const m = Math.min(LINE_SIZE - inLine, n - pos);
      const v = this.#lineOf(e, at >>> LINE_SHIFT);
      if (v !== 0) {
        const lb = ((v - 1) & LINE_SLAB_MASK) * LINE_SIZE + inLine;
        this.#lineSlab(v - 1).fill(0, lb, lb + m);
      }
      pos += m;
    }
  }

  #newTable(): number {
    const table = this.#tableCount++;
    if ((table & TABLE_CHUNK_MASK) === 0) this.#tables.push(new Int32Array((TABLE_CHUNK_MASK + 1) * LINES_PER_PAGE));
    return table;
  }

  #newLine(): number {
    const line = this.#lines++;
    if ((line & LINE_SLAB_MASK) === 0) {
      const slab = new Uint8Array((LINE_SLAB_MASK + 1) * LINE_SIZE);
      this.#lineSlabs.push(slab);
      this.#lineSlabViews.push(new DataView(slab.buffer));
    }
    return line;
  }
}

/**
 * The short write's copy of all of `src` (`n` = its length, at most SHORT_ACCESS_BYTES) into `dst` at
 * `dstPos`. A `set` of the whole source makes no view; below SET_MIN_BYTES the loop is cheaper than its
 * call. (A `set` through a `subarray` view, as the checked path does, allocated the view: in the 1 M-page
 * ODP benchmark such views were 38 % of all the garbage.) The range must be in bounds.
 */
function writeBytes(src: Uint8Array, dst: Uint8Array, dstPos: number, n: number): void {
  if (n >= SET_MIN_BYTES) {
    dst.set(src, dstPos);
    return;
  }
  for (let i = 0; i < n; i++) dst[dstPos + i] = src[i] ?? 0;
}

/**
 * The short read's copy of `n` bytes (at most SHORT_ACCESS_BYTES) at `srcPos` of a slab into `dst`
 * (from 0): four bytes a load through the slab's DataView, little-endian so byte i of the word is byte
 * i of memory; the loop needs no view of `dst`. 64 bytes: 23 ns against 33 byte by byte (as above). The
 * range must be in bounds.
 */
function readBytes(src: DataView, srcPos: number, dst: Uint8Array, n: number): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const w = src.getInt32(srcPos + i, true);
    dst[i] = w;
    dst[i + 1] = w >>> 8;
    dst[i + 2] = w >>> 16;
    dst[i + 3] = w >>> 24;
  }
  for (; i < n; i++) dst[i] = src.getUint8(srcPos + i);
}
