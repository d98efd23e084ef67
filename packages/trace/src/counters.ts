/**
 * Every event dmasim counts, one index each. This is a const enum in spirit: TypeScript `const enum`s do
 * not survive `isolatedModules` across package boundaries, so it is an `as const` object whose values are
 * dense indices into a Float64Array. Append new kinds at the end; never renumber.
 */
export const Counter = {
  // memory
  MemReadBytes: 0,
  MemWriteBytes: 1,
  MemPagesMaterialised: 2,
  PageAllocs: 3,
  PageFrees: 4,
  PageDescLookups: 5,
  // iommu: page tables
  IommuMapCalls: 6,
  IommuUnmapCalls: 7,
  PteWrites: 8,
  PteClears: 9,
  PtPagesAllocated: 10,
  PtPagesFreed: 11,
  PtWalks: 12,
  PtWalkLevels: 13,
  // iommu: IOTLB
  IotlbHits: 14,
  IotlbMisses: 15,
  IotlbEvictions: 16,
  IotlbStaleHits: 17,
  IotlbInvalRange: 18,
  IotlbInvalDomain: 19,
  IotlbInvalGlobal: 20,
  IotlbSyncMap: 21,
  IommuFaults: 22,
  // pcie fabric
  TlpsToMemory: 23,
  BytesToMemory: 24,
  TlpsPeerViaSwitch: 25,
  BytesPeerViaSwitch: 26,
  TlpsPeerViaHostBridge: 27,
  BytesPeerViaHostBridge: 28,
  UnsupportedRequests: 29,
  // dma: IOVA allocator and flush queue
  IovaAllocCache: 30,
  IovaAllocTree: 31,
  IovaAllocFail: 32,
  IovaFreeCache: 33,
  IovaFreeTree: 34,
  IovaCacheFlushes: 35,
  FlushQueueEntries: 36,
  FlushQueueFlushes: 37,
  FlushQueueFullFlushes: 38,
  // dma: swiotlb and CPU caches
  SwiotlbSlotsAllocated: 39,
  SwiotlbSlotsFreed: 40,
  SwiotlbBounceBytes: 41,
  SwiotlbAllocFail: 42,
  CacheLinesWrittenBack: 43,
  CacheLinesInvalidated: 44,
  // dma: API calls
  DmaMapCalls: 45,
  DmaUnmapCalls: 46,
  DmaSyncCalls: 47,
  DmaIovaTryAllocs: 48,
  DmaIovaLinks: 49,
  DmaIovaSyncs: 50,
  DmaIovaUnlinks: 51,
  DmaIovaDestroys: 52,
  DmaMappingErrors: 53,
  DmaBookkeepingBytesAllocated: 54,
  DmaBookkeepingBytesFreed: 55,
  DmaDebugErrors: 56,
  P2pStateLookups: 57,
  PrivateMemoryBlocked: 58,
  IotlbInvalDevice: 59,
  PtPagesPendingFree: 60,
} as const;

export type Counter = (typeof Counter)[keyof typeof Counter];
export type CounterName = keyof typeof Counter;

/** Names by index, for reports and exporters. */
export const counterNames: readonly CounterName[] = (() => {
  const names: CounterName[] = [];
  for (const [name, index] of Object.entries(Counter) as [CounterName, number][]) names[index] = name;
  return names;
})();

export const COUNTER_KINDS = counterNames.length;

/** Counter values keyed by name; only non-zero entries are kept by `snapshot().nonZero()`. */
export type CounterValues = Readonly<Partial<Record<CounterName, number>>>;

/**
 * A frozen copy of every counter at one instant. Cheap to take (one typed-array copy) so callers can
 * bracket an operation with two snapshots and diff them.
 */
export class CounterSnapshot {
  readonly #values: Float64Array;

  /** @internal use `Counters.snapshot()`. */
  constructor(values: Float64Array) {
    this.#values = values;
  }

  get(kind: Counter): number {
    return this.#values[kind] ?? 0;
  }

  /** `this - earlier`, as a new snapshot. */
  diff(earlier: CounterSnapshot): CounterSnapshot {
    const out = new Float64Array(COUNTER_KINDS);
    for (let i = 0; i < COUNTER_KINDS; i++) out[i] = (this.#values[i] ?? 0) - earlier.get(i as Counter);
    return new CounterSnapshot(out);
  }

  /** Every counter that is not zero, by name, in counter order. */
  nonZero(): CounterValues {
    const out: Partial<Record<CounterName, number>> = {};
    for (let i = 0; i < COUNTER_KINDS; i++) {
      const v = this.#values[i] ?? 0;
      const name = counterNames[i];
      if (v !== 0 && name !== undefined) out[name] = v;
    }
    return out;
  }

  toJSON(): CounterValues {
    return this.nonZero();
  }
}

/**
 * The live counters of one platform. `add` is the hot path: one typed-array store.
 *
 * A producer on a very hot path may also defer its increments, as the kernel's percpu_counter does: it
 * keeps a private count and registers a fold (`deferIncrements`) that adds that count to `values`. Every
 * read through this class (`get`, `snapshot`, `reset`) runs the folds first, so readers never see the
 * difference; only `values` itself may lag, which is why it is for adding, not for reading.
 */
export class Counters {
  /** The counter array, indexed by Counter. Add to it freely; read through `get` or `snapshot`. */
  readonly values = new Float64Array(COUNTER_KINDS);
  readonly #folds: (() => void)[] = [];

  add(kind: Counter, n = 1): void {
    this.values[kind] = (this.values[kind] ?? 0) + n;
  }

  get(kind: Counter): number {
    this.fold();
    return this.values[kind] ?? 0;
  }

  snapshot(): CounterSnapshot {
    this.fold();
    return new CounterSnapshot(this.values.slice());
  }

  reset(): void {
    this.fold();
    this.values.fill(0);
  }

  /**
   * Registers `fold`, which adds a producer's deferred increments to `values` (and clears them). Returns
   * the function that unregisters it; call that after a last fold when the producer goes away.
   */
  deferIncrements(fold: () => void): () => void {
    this.#folds.push(fold);
    return () => {
      const i = this.#folds.indexOf(fold);
      if (i >= 0) this.#folds.splice(i, 1);
    };
  }

  /** Adds every deferred increment to `values` now. */
  fold(): void {
    for (const f of this.#folds) f();
  }
}
