import { DmasimInputError } from "@dmasim/trace";

/** Always `EINVAL`: an argument out of its range is bad input (the kernel has no errno for these calls). */
export type IovaErrorCode = "EINVAL";

/**
 * Bad input to the IOVA allocator or the flush queue. The message names the argument, the value and
 * what was expected; the call that threw changed nothing.
 */
export class IovaError extends DmasimInputError {
  override readonly name: string = "IovaError";
  declare readonly code: IovaErrorCode;
  constructor(argument: string, value: unknown, expected: string) {
    super("", argument, value, expected);
  }
}

export function checkCount(argument: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new IovaError(argument, value, `a safe integer >= ${min}`);
  }
}

export function checkCpu(cpu: number, cpus: number): void {
  if (!Number.isInteger(cpu) || cpu < 0 || cpu >= cpus) {
    throw new IovaError("cpu", cpu, `an integer CPU number in [0, ${cpus - 1}]`);
  }
}
