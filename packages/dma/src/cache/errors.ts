/** EINVAL: a bad argument; EFAULT: a cached access outside RAM (MMIO and holes are never cached). */
export type CpuCacheErrorCode = "EINVAL" | "EFAULT";

/** Bad input to the CPU cache model; the call that threw changed no line and no byte of memory. */
export class CpuCacheError extends Error {
  override readonly name = "CpuCacheError";
  constructor(
    readonly code: CpuCacheErrorCode,
    message: string,
  ) {
    super(message);
  }
}
