/** Thrown when a trace-layer call gets an argument it cannot use; names the argument and the value. */
export class TraceInputError extends Error {
  readonly code = "ETRACEINPUT";
  override readonly name = "TraceInputError";
  constructor(
    readonly argument: string,
    readonly value: unknown,
    expected: string,
  ) {
    super(`${argument} = ${String(value)} is invalid: expected ${expected}`);
  }
}
