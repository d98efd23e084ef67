import { DmasimStateError } from "@dmasim/trace";

/**
 * Bad input to the DMA API model: an argument that is not even a valid value (a non-integer address, a
 * negative size, an unknown direction). The kernel would misbehave or crash on these; dmasim refuses them
 * before touching any state, naming the argument, its value and what was expected.
 */
export class DmaInputError extends Error {
  readonly code = "EINVAL";
  override readonly name = "DmaInputError";
  constructor(
    readonly fn: string,
    readonly argument: string,
    readonly value: unknown,
    expected: string,
  ) {
    super(`${fn}: ${argument} = ${formatValue(value)} is invalid: expected ${expected}`);
  }
}

/** A platform or kernel configuration the model cannot run (unknown BDF, bad option). */
export class DmaConfigError extends Error {
  readonly code = "EINVAL";
  override readonly name = "DmaConfigError";
}

function formatValue(v: unknown): string {
  if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return `0x${v.toString(16)}`;
  return typeof v === "string" ? JSON.stringify(v) : String(v);
}

export function hex(n: number): string {
  return n >= 0 && Number.isFinite(n) ? `0x${n.toString(16)}` : String(n);
}

/** Any option value as a message shows it: strings quoted, objects as JSON. */
export function showValue(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "object" && v !== null) {
    try {
      return JSON.stringify(v);
    } catch {
      return Object.prototype.toString.call(v);
    }
  }
  return String(v);
}

/**
 * A valid call the DMA layer refuses in its current state: a second DmaKernel on a platform that has one,
 * a kernel used after `shutdown()`. `code` is the errno the kernel would use (EBUSY, ENODEV).
 */
export class DmaStateError extends DmasimStateError {
  override readonly name: string = "DmaStateError";
}
