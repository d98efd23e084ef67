import { DmasimInputError, DmasimStateError } from "@dmasim/trace";

/** EINVAL: a bad argument; EFAULT: a cached access outside RAM (MMIO and holes are never cached). */
export type CpuCacheErrorCode = "EINVAL" | "EFAULT";

/**
 * A CPU cache call refused in the model's state (a cached access outside RAM, DMA_NONE maintenance); the call
 * that threw changed no line and no byte of memory. `instanceof CpuCacheError` also holds for
 * `CpuCacheInputError`, so one catch takes everything the cache model throws.
 */
export class CpuCacheError extends DmasimStateError {
  override readonly name: string = "CpuCacheError";
  declare readonly code: CpuCacheErrorCode;
  static override [Symbol.hasInstance](x: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(this, x) || (this === CpuCacheError && x instanceof CpuCacheInputError);
  }
}

/** Bad input to the CPU cache model: names the function, the argument, the value and what was expected. */
export class CpuCacheInputError extends DmasimInputError {
  override readonly name: string = "CpuCacheInputError";
  declare readonly code: "EINVAL";
}
