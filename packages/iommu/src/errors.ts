import { DmasimInputError, DmasimStateError } from "@dmasim/trace";

/** errno-style codes, as the kernel's IOMMU core would return them. */
export type IommuErrorCode = "EINVAL" | "EEXIST" | "ENOENT" | "ERANGE" | "EBUSY" | "ENOMEM";

/**
 * A call the IOMMU model refuses in its current state (an overlap, a busy domain, a partial large leaf…);
 * `code` is the errno the kernel's IOMMU core would return, and the message starts with it. The model is
 * left exactly as it was before the call. `instanceof IommuError` also holds for `IommuInputError`, so
 * one catch still takes everything the IOMMU model throws.
 */
export class IommuError extends DmasimStateError {
  override readonly name: string = "IommuError";
  declare readonly code: IommuErrorCode;
  constructor(code: IommuErrorCode, message: string) {
    super(code, `${code}: ${message}`);
  }

  /** `instanceof IommuError` also holds for `IommuInputError`, so one catch takes every error of an IOMMU call. */
  static override [Symbol.hasInstance](x: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(this, x) || (this === IommuError && x instanceof IommuInputError);
  }
}

/** Bad input to the IOMMU model: names the function, the argument, the value and what was expected. */
export class IommuInputError extends DmasimInputError {
  override readonly name: string = "IommuInputError";
  declare readonly code: "EINVAL";
}
