import { DmasimInputError, DmasimStateError } from "@dmasim/trace";

/**
 * Bad input to the scatterlist model: an index outside the table, a length that is not a byte count, a
 * table used after sgFreeTable. The kernel would corrupt memory or crash; dmasim refuses before changing
 * anything, naming the argument, its value and what was expected. `code` is always `EINVAL` (the first
 * argument keeps throw sites reading like the kernel's `-EINVAL`). `instanceof ScatterlistError` also holds
 * for `ScatterlistBusyError`, so one catch still takes everything this package throws.
 */
export class ScatterlistError extends DmasimInputError {
  override readonly name: string = "ScatterlistError";
  declare readonly code: "EINVAL";
  constructor(_code: "EINVAL", fn: string, argument: string, value: unknown, expected: string) {
    super(fn, argument, value, expected);
  }

  /** Makes `instanceof ScatterlistError` also hold for the busy and no-memory errors. */
  static override [Symbol.hasInstance](x: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(this, x) || (this === ScatterlistError && (x instanceof ScatterlistBusyError || x instanceof ScatterlistNoMemError));
  }
}

/** A valid call refused because the table is mapped for DMA (mapping it twice, freeing or rewriting it): `EBUSY`. */
export class ScatterlistBusyError extends DmasimStateError {
  override readonly name: string = "ScatterlistBusyError";
  declare readonly code: "EBUSY";
  constructor(
    /** The kernel function that refused, e.g. `dma_map_sgtable`. */
    readonly fn: string,
    message: string,
  ) {
    super("EBUSY", `${fn}: ${message}`);
  }
}

export function checkCount(fn: string, name: string, v: number, min: number): void {
  if (!Number.isSafeInteger(v) || v < min) throw new ScatterlistError("EINVAL", fn, name, v, `an integer >= ${min}`);
}

/**
 * A table larger than the kernel could allocate (more than SG_MAX_NENTS entries: its chained chunk
 * allocations would fail): `ENOMEM`, as sg_alloc_table returns.
 */
export class ScatterlistNoMemError extends DmasimStateError {
  override readonly name: string = "ScatterlistNoMemError";
  declare readonly code: "ENOMEM";
  constructor(
    /** The kernel function that refused, e.g. `dma_map_sgtable`. */
    readonly fn: string,
    message: string,
  ) {
    super("ENOMEM", `${fn}: ${message}`);
  }
}
