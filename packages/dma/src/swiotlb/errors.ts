import { DmasimStateError } from "@dmasim/trace";

/**
 * Codes follow the errno a kernel caller would see for the same misuse: EINVAL for a bad argument or a
 * size that does not match the mapping, ENOENT for an address that is not a live bounce buffer, EBUSY for
 * tearing down a pool that still has mappings, ENOMEM when the pool's memory cannot be allocated.
 */
export type SwiotlbErrorCode = "EINVAL" | "ENOENT" | "EBUSY" | "ENOMEM";

/**
 * Misuse of swiotlb. Upstream mostly WARNs and carries on (or BUG()s); the model refuses instead, before
 * any byte is copied or any slot changes, so a test sees the mistake and the pool stays as it was.
 * Exhaustion is not misuse: it returns DMA_MAPPING_ERROR like the kernel.
 */
export class SwiotlbError extends DmasimStateError {
  override readonly name: string = "SwiotlbError";
  declare readonly code: SwiotlbErrorCode;
  constructor(code: SwiotlbErrorCode, message: string, options?: ErrorOptions) {
    super(code, message);
    if (options !== undefined) this.cause = options.cause;
  }
}
