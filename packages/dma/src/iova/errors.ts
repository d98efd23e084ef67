/** Codes follow the errno a kernel caller would see for the same misuse. */
export type IovaErrorCode = "EINVAL" | "ERANGE";

/**
 * Bad input to the IOVA allocator or the flush queue. The message names the argument, the value and
 * what was expected; the call that threw changed nothing.
 */
export class IovaError extends Error {
  override readonly name = "IovaError";
  constructor(
    readonly code: IovaErrorCode,
    readonly argument: string,
    readonly value: unknown,
    expected: string,
  ) {
    super(`${argument} = ${String(value)} is invalid: expected ${expected}`);
  }
}

export function checkCount(argument: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new IovaError("EINVAL", argument, value, `a safe integer >= ${min}`);
  }
}

export function checkCpu(cpu: number, cpus: number): void {
  if (!Number.isInteger(cpu) || cpu < 0 || cpu >= cpus) {
    throw new IovaError("ERANGE", "cpu", cpu, `an integer CPU number in [0, ${cpus - 1}]`);
  }
}
