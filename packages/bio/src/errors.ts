import { DmasimInputError, DmasimStateError } from "@dmasim/trace";

/** Why a bio, request or queue-limit argument was refused. */
export type BioErrorReason =
  | "bad-argument" // not a valid value at all (negative length, non-integer address, unknown op)
  | "empty" // a bio or request with no data
  | "no-page" // a bvec over memory with no struct page (a hole, MMIO without ZONE_DEVICE pages)
  | "crosses-owner" // a bvec running from one kind of page into another (RAM into a P2P BAR, one provider into the next)
  | "mixed-p2p" // P2P and ordinary pages, or two P2P providers, in one bio or request
  | "limits" // the queue limits forbid it (segments, size, alignment, virtual boundary): the caller must split
  | "not-mapped"; // an unmap for a request that holds no mapping

/**
 * A bio, request or queue-limit refused for what it describes (no data, pages without a struct page, a mix
 * of memory kinds, the queue limits, no mapping). Thrown before any state changes. `code` is `EFAULT` for
 * memory the block layer cannot address (`no-page`, `crosses-owner`), `EINVAL` otherwise.
 * `instanceof BioError` also holds for `BioInputError`, so one catch still takes everything this package throws.
 */
export class BioError extends DmasimStateError {
  override readonly name: string = "BioError";
  declare readonly code: "EINVAL" | "EFAULT";
  /** Why the bio layer refused, as a fixed string tests and callers can switch on. */
  readonly reason: BioErrorReason;
  constructor(reason: BioErrorReason, message: string) {
    super(reason === "no-page" || reason === "crosses-owner" ? "EFAULT" : "EINVAL", message);
    this.reason = reason;
  }

  /** Makes `instanceof BioError` also hold for `BioInputError`, which has another base. */
  static override [Symbol.hasInstance](x: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(this, x) || (this === BioError && x instanceof BioInputError);
  }
}

/** Bad input (`reason` "bad-argument"): not a valid value at all; names the argument, the value and what was expected. */
export class BioInputError extends DmasimInputError {
  override readonly name: string = "BioInputError";
  declare readonly code: "EINVAL";
  /** Always "bad-argument", so `reason` can be read on any error this package throws. */
  readonly reason = "bad-argument";
}

/** `what = value is invalid: expected …`; `what` may start with the function (`"blk_rq_dma_map_iter_start: req"`). */
export function invalid(what: string, value: unknown, expected: string): BioInputError {
  return new BioInputError("", what, value, expected);
}
