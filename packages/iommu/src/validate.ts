import { hex } from "@dmasim/trace";
import { IommuError, IommuInputError } from "./errors.js";

/** Throws EINVAL unless `value` is a safe integer >= 0. */
export function checkAddress(argument: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new IommuInputError("", argument, value, "a safe integer >= 0");
  }
}

/** Throws EINVAL unless `value` is a safe integer > 0. */
export function checkSize(argument: string, value: number): void {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new IommuInputError("", argument, value, "a safe integer > 0");
  }
}

/** Throws EINVAL unless `value` is a multiple of `granule`. */
export function checkAligned(argument: string, value: number, granule: number): void {
  if (value % granule !== 0) {
    throw new IommuError("EINVAL", `${argument} = ${hex(value)} is not aligned to the IOMMU granule (${hex(granule)})`);
  }
}
