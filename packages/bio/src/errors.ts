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
 * Bad input to the block layer model. Thrown before any state changes; the message names the argument,
 * its value and what was expected.
 */
export class BioError extends Error {
  override readonly name = "BioError";
  readonly code: "EINVAL" | "EFAULT";
  readonly reason: BioErrorReason;
  constructor(reason: BioErrorReason, message: string) {
    super(message);
    this.reason = reason;
    this.code = reason === "no-page" || reason === "crosses-owner" ? "EFAULT" : "EINVAL";
  }
}

export function hex(n: number): string {
  return Number.isSafeInteger(n) && n >= 0 ? `0x${n.toString(16)}` : String(n);
}

/** `what = value is invalid: expected …` */
export function invalid(reason: BioErrorReason, what: string, value: unknown, expected: string): BioError {
  const shown = typeof value === "number" ? hex(value) : typeof value === "string" ? JSON.stringify(value) : String(value);
  return new BioError(reason, `${what} = ${shown} is invalid: expected ${expected}`);
}
