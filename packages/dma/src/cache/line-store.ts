/**
 * The cached lines: a Map from line index (phys / lineSize) to a slot, the line bytes of every slot in one
 * growable Uint8Array, a dirty byte per slot, and an intrusive doubly linked LRU list over slots in
 * Int32Arrays. Nothing is allocated per line beyond the Map entry.
 */
export class LineStore {
  readonly lineSize: number;
  #bytes: Uint8Array;
  #dirty: Uint8Array;
  #lineOf: Float64Array;
  #prev: Int32Array;
  #next: Int32Array;
  readonly #slotOf = new Map<number, number>();
  #freeSlots: number[] = [];
  #highSlot = 0;
  /** LRU head (least recently used) and tail (most recently used); -1 when empty. */
  #head = -1;
  #tail = -1;
  #dirtyCount = 0;

  constructor(lineSize: number) {
    this.lineSize = lineSize;
    const initial = 64;
    this.#bytes = new Uint8Array(initial * lineSize);
    this.#dirty = new Uint8Array(initial);
    this.#lineOf = new Float64Array(initial);
    this.#prev = new Int32Array(initial);
    this.#next = new Int32Array(initial);
  }

  get size(): number {
    return this.#slotOf.size;
  }

  get dirtyCount(): number {
    return this.#dirtyCount;
  }

  /** Slot of a cached line, or -1. */
  slotOf(line: number): number {
    return this.#slotOf.get(line) ?? -1;
  }

  lineOf(slot: number): number {
    return this.#lineOf[slot] ?? -1;
  }

  /** The bytes of one slot (a view, not a copy). */
  view(slot: number): Uint8Array {
    const o = slot * this.lineSize;
    return this.#bytes.subarray(o, o + this.lineSize);
  }

  isDirty(slot: number): boolean {
    return this.#dirty[slot] === 1;
  }

  setDirty(slot: number, dirty: boolean): void {
    const was = this.#dirty[slot] === 1;
    if (was === dirty) return;
    this.#dirty[slot] = dirty ? 1 : 0;
    this.#dirtyCount += dirty ? 1 : -1;
  }

  /** The least recently used slot, or -1. */
  get lruSlot(): number {
    return this.#head;
  }

  /** Make `slot` the most recently used. */
  touch(slot: number): void {
    if (this.#tail === slot) return;
    this.#unlink(slot);
    this.#append(slot);
  }

  /** Allocate a clean slot for `line` (which must not be cached) as the most recently used. */
  insert(line: number): number {
    let slot = this.#freeSlots.pop();
    if (slot === undefined) {
      slot = this.#highSlot++;
      if (slot >= this.#dirty.length) this.#grow();
    }
    this.#slotOf.set(line, slot);
    this.#lineOf[slot] = line;
    this.#dirty[slot] = 0;
    this.#append(slot);
    return slot;
  }

  /** Drop a line (its bytes are forgotten; write it back first if that is wanted). */
  remove(slot: number): void {
    this.setDirty(slot, false);
    this.#slotOf.delete(this.#lineOf[slot] ?? -1);
    this.#lineOf[slot] = -1;
    this.#unlink(slot);
    this.#freeSlots.push(slot);
  }

  /** Cached line indices in ascending order (for whole-cache operations; not a hot path). */
  lines(): number[] {
    return [...this.#slotOf.keys()].sort((a, b) => a - b);
  }

  #append(slot: number): void {
    this.#prev[slot] = this.#tail;
    this.#next[slot] = -1;
    if (this.#tail >= 0) this.#next[this.#tail] = slot;
    else this.#head = slot;
    this.#tail = slot;
  }

  #unlink(slot: number): void {
    const p = this.#prev[slot] ?? -1;
    const n = this.#next[slot] ?? -1;
    if (p >= 0) this.#next[p] = n;
    else this.#head = n;
    if (n >= 0) this.#prev[n] = p;
    else this.#tail = p;
  }

  #grow(): void {
    const cap = this.#dirty.length * 2;
    const bytes = new Uint8Array(cap * this.lineSize);
    bytes.set(this.#bytes);
    this.#bytes = bytes;
    const dirty = new Uint8Array(cap);
    dirty.set(this.#dirty);
    this.#dirty = dirty;
    const lineOf = new Float64Array(cap);
    lineOf.set(this.#lineOf);
    this.#lineOf = lineOf;
    const prev = new Int32Array(cap);
    prev.set(this.#prev);
    this.#prev = prev;
    const next = new Int32Array(cap);
    next.set(this.#next);
    this.#next = next;
  }
}
