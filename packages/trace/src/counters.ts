import { DmasimInputError, DmasimStateError } from "./errors.js";

/**
 * Counters are slots of one Float64Array per platform. The slots are not listed here: each package
 * declares its own block of them with `defineCounters(base, names)`, at a fixed base it owns, and the
 * blocks of different packages never overlap. A block is an immutable `name -> index` object, so the hot
 * path still indexes the typed array by a constant read off a frozen object (a const enum in spirit:
 * TypeScript `const enum`s do not survive `isolatedModules` across package boundaries). Append new
 * names at the end of a block; never renumber.
 */
export const COUNTER_CAPACITY = 128;

/** A counter's index into the counters' array (`Counters.get`, `Counters.add`). */
export type CounterIndex = number;

/** One package's counters, name to fixed index; frozen. */
export type CounterBlock<N extends string = string> = Readonly<Record<N, CounterIndex>>;

/** Counter values keyed by name; only non-zero entries are kept by `snapshot().nonZero()`. */
export type CounterValues = Readonly<Record<string, number>>;

/**
 * Declares a block of counters at indices `base`, `base + 1`, ... in the order of `names`. The caller
 * owns the range; `combineCounters` and `Counters.declare` refuse blocks that claim one index twice.
 */
export function defineCounters<const N extends string>(base: number, names: readonly N[]): CounterBlock<N> {
  if (!Number.isInteger(base) || base < 0 || base + names.length > COUNTER_CAPACITY) {
    throw new DmasimInputError("defineCounters", "base", base, `an integer in [0, ${COUNTER_CAPACITY - names.length}]`);
  }
  const block: Record<string, number> = {};
  names.forEach((name, i) => {
    if (name in block) throw new DmasimInputError("defineCounters", "names", name, "names that appear once");
    block[name] = base + i;
  });
  return Object.freeze(block);
}

type UnionToIntersection<U> = (U extends unknown ? (u: U) => void : never) extends (i: infer I) => void ? I : never;

/**
 * The blocks one package sees (its own and those of the layers below it) as one frozen object, so its
 * code keeps writing `Counter.PteWrites` whatever package declared `PteWrites`.
 */
export function combineCounters<const T extends readonly CounterBlock[]>(...blocks: T): Readonly<UnionToIntersection<T[number]>> {
  const out: Record<string, number> = {};
  const byIndex: string[] = [];
  for (const block of blocks) {
    for (const [name, index] of Object.entries(block)) {
      const holder = byIndex[index];
      if ((holder !== undefined && holder !== name) || (name in out && out[name] !== index)) {
        throw new DmasimStateError("EEXIST", `counter blocks overlap: ${name} at index ${index} (${holder ?? name} already there)`);
      }
      byIndex[index] = name;
      out[name] = index;
    }
  }
  return Object.freeze(out) as Readonly<UnionToIntersection<T[number]>>;
}

/** Names by index of the counters in `block`, for reports and exporters (holes are undefined). */
export function counterNamesOf<N extends string>(block: CounterBlock<N>): readonly (N | undefined)[] {
  const names: (N | undefined)[] = [];
  for (const [name, index] of Object.entries(block) as [N, number][]) names[index] = name;
  return Object.freeze(Array.from(names));
}

/** The name a report gives a slot no declared block names (so a missing `declare` shows, not hides). */
function nameOf(names: readonly (string | undefined)[], index: number): string {
  return names[index] ?? `counter${index}`;
}

/**
 * A frozen copy of every counter at one instant. Cheap to take (one typed-array copy) so callers can
 * bracket an operation with two snapshots and diff them.
 */
export class CounterSnapshot {
  readonly #values: Float64Array;
  readonly #names: readonly (string | undefined)[];

  /** Made by `Counters.snapshot()` (`.` exports the class as a type only). */
  constructor(values: Float64Array, names: readonly (string | undefined)[] = []) {
    this.#values = values;
    this.#names = names;
  }

  /** The counter's value at the instant of the snapshot; 0 for an index no block declares. */
  get(kind: CounterIndex): number {
    return this.#values[kind] ?? 0;
  }

  /** `this - earlier`, as a new snapshot. */
  diff(earlier: CounterSnapshot): CounterSnapshot {
    const out = new Float64Array(COUNTER_CAPACITY);
    for (let i = 0; i < COUNTER_CAPACITY; i++) out[i] = (this.#values[i] ?? 0) - earlier.get(i);
    return new CounterSnapshot(out, this.#names);
  }

  /** Every counter that is not zero, by name, in index order. */
  nonZero(): CounterValues {
    const out: Record<string, number> = {};
    for (let i = 0; i < COUNTER_CAPACITY; i++) {
      const v = this.#values[i] ?? 0;
      if (v !== 0) out[nameOf(this.#names, i)] = v;
    }
    return out;
  }

  /** The non-zero counters by name, so `JSON.stringify(snapshot)` prints what `nonZero()` returns. */
  toJSON(): CounterValues {
    return this.nonZero();
  }
}

/**
 * The key of `Counters`' backing array, exported by `@dmasim/trace/internal` only: a producer on a very hot
 * path (a single-granule IOMMU map, a two-step link) adds to `counters[counterValues][index]` directly
 * instead of calling `add`, which is the same store without the call. Adding is all it may do there: the
 * array lags behind deferred increments (see `Counters`), so readers go through `get` and `snapshot`.
 */
export const counterValues: unique symbol = Symbol("dmasim.counterValues");

/**
 * The live counters of one platform. `add` is the hot path: one typed-array store.
 *
 * Names are per platform, not global: each layer `declare`s its block on the `Counters` it was given
 * (in its constructor), so a snapshot names exactly the counters of the layers present.
 *
 * A producer on a very hot path may also defer its increments, as the kernel's percpu_counter does: it
 * keeps a private count and registers a fold (`deferIncrements`) that adds that count to the counters.
 * Every read through this class (`get`, `snapshot`, `reset`) runs the folds first, so readers never see
 * the difference.
 */
export class Counters {
  /** The counter array, indexed by a block's index: `add`, `get`, `snapshot` and `reset` use it. */
  readonly #values = new Float64Array(COUNTER_CAPACITY);
  /**
   * The same array, for the producers of dmasim's own packages that add to it directly (the key is in
   * `@dmasim/trace/internal`; see `counterValues`). Adding only: it lags behind deferred increments.
   */
  readonly [counterValues] = this.#values;
  readonly #folds: (() => void)[] = [];
  readonly #names: (string | undefined)[] = [];

  /** Adds `n` (default 1) to the counter at `kind`: the hot path, one typed-array store and no check. */
  add(kind: CounterIndex, n = 1): void {
    const v = this.#values;
    v[kind] = (v[kind] ?? 0) + n;
  }

  /** The counter's current value, deferred increments included. */
  get(kind: CounterIndex): number {
    this.fold();
    return this.#values[kind] ?? 0;
  }

  /**
   * Names the slots of `block` in reports. Declaring the same block again is a no-op; a block that
   * claims a slot another name holds is refused (EEXIST), since two packages would add into one slot.
   */
  declare(block: CounterBlock): void {
    for (const [name, index] of Object.entries(block)) {
      const holder = this.#names[index];
      if (holder === name) continue;
      if (holder !== undefined) throw new DmasimStateError("EEXIST", `counter ${name} at index ${index} overlaps ${holder}`);
      this.#names[index] = name;
    }
  }

  /** Names by index of every declared counter (holes are undefined). */
  get names(): readonly (string | undefined)[] {
    return this.#names.slice();
  }

  /** A frozen copy of every counter (deferred increments folded in first), to diff against a later one. */
  snapshot(): CounterSnapshot {
    this.fold();
    return new CounterSnapshot(this.#values.slice(), this.#names.slice());
  }

  /** Sets every counter to zero, deferred increments included; declared names are kept. */
  reset(): void {
    this.fold();
    this.#values.fill(0);
  }

  /**
   * Registers `fold`, which adds a producer's deferred increments to the counters (and clears them). Returns
   * the function that unregisters it; call that after a last fold when the producer goes away.
   */
  deferIncrements(fold: () => void): () => void {
    this.#folds.push(fold);
    return () => {
      const i = this.#folds.indexOf(fold);
      if (i >= 0) this.#folds.splice(i, 1);
    };
  }

  /** Adds every deferred increment to the counters now. */
  fold(): void {
    for (const f of this.#folds) f();
  }
}
