/** errno-style codes, as the kernel's IOMMU core would return them. */
export type IommuErrorCode = "EINVAL" | "EEXIST" | "ENOENT" | "ERANGE" | "EBUSY" | "ENOMEM";

/**
 * Every misuse of the IOMMU model throws this. The message names the argument, the value and what was
 * expected; the model is left exactly as it was before the call.
 */
export class IommuError extends Error {
  override readonly name = "IommuError";
  constructor(
    readonly code: IommuErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/** Formats an address for messages: hex, as kernel logs print IOVAs and physical addresses. */
export function hex(n: number): string {
  return Number.isFinite(n) && n >= 0 ? `0x${n.toString(16)}` : String(n);
}
