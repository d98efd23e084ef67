import { DmasimInputError, DmasimStateError, hex } from "@dmasim/trace";

/** The errno codes the memory layer's errors carry. */
export type MemoryErrorCode = "EINVAL" | "EFAULT" | "ENXIO" | "EEXIST" | "ENOMEM";

/**
 * Base of the memory layer's state errors; `code` is the errno the kernel would use. `instanceof MemoryError`
 * also holds for the layer's bad-input error (`AddressError`, a `DmasimInputError`), so one catch still takes
 * everything the memory layer throws.
 */
export class MemoryError extends DmasimStateError {
  override readonly name: string = "MemoryError";
  declare readonly code: MemoryErrorCode;
  /** Makes `instanceof MemoryError` also hold for `AddressError`, which has another base. */
  static override [Symbol.hasInstance](x: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(this, x) || (this === MemoryError && x instanceof AddressError);
  }
}

/** An argument is not usable: not a safe non-negative integer, misaligned, out of range, unknown flag bits. */
export class AddressError extends DmasimInputError {
  override readonly name: string = "AddressError";
  declare readonly code: "EINVAL";
  constructor(argument: string, value: unknown, expected: string) {
    super("", argument, value, expected);
  }
}

/** The access touches a physical address that no region covers (a hole in the physical address map). */
export class UnmappedAddressError extends MemoryError {
  override readonly name = "UnmappedAddressError";
  declare readonly code: "EFAULT";
  constructor(
    /** The physical address that no region covers. */
    readonly addr: number,
    what: string,
  ) {
    super("EFAULT", `${what}: physical address ${hex(addr)} is in a hole (no RAM or MMIO region covers it)`);
  }
}

/** The access reaches an MMIO region that was registered without a byte backing. */
export class MmioNoBackingError extends MemoryError {
  override readonly name = "MmioNoBackingError";
  declare readonly code: "ENXIO";
  constructor(
    /** The physical address accessed. */
    readonly addr: number,
    /** Name of the MMIO region without backing. */
    readonly region: string,
    what: string,
  ) {
    super("ENXIO", `${what}: physical address ${hex(addr)} is in MMIO region "${region}", which has no backing store; pass { backing } to addMmio to give it bytes`);
  }
}

/** A new region or ZONE_DEVICE range overlaps one that exists. */
export class RegionOverlapError extends MemoryError {
  override readonly name = "RegionOverlapError";
  declare readonly code: "EEXIST";
  constructor(
    /** Start of the range that was refused. */
    readonly base: number,
    /** Bytes in the range that was refused. */
    readonly size: number,
    /** The region already there that the range overlaps. */
    readonly existing: string,
  ) {
    super("EEXIST", `range [${hex(base)}, ${hex(base + size)}) overlaps ${existing}`);
  }
}

/** The page allocator has no run of free pages that satisfies the request. */
export class OutOfMemoryError extends MemoryError {
  override readonly name = "OutOfMemoryError";
  declare readonly code: "ENOMEM";
  constructor(
    /** Pages asked for. */
    readonly count: number,
    /** Alignment asked for, in pages. */
    readonly align: number,
    /** Exclusive upper address limit asked for (Infinity: none). */
    readonly below: number,
    freePages: number,
    largestRun: number,
  ) {
    super(
      "ENOMEM",
      `allocPages: no run of ${count} free page(s) aligned to ${align} page(s)` +
        (below === Infinity ? "" : ` ending at or below ${hex(below)}`) +
        ` (${freePages} page(s) free, largest free run ${largestRun} page(s))`,
    );
  }
}

/** A page is not in the state the call needs: double free, freeing a page never allocated, busy range. */
export class PageStateError extends MemoryError {
  override readonly name = "PageStateError";
  declare readonly code: "EINVAL";
  constructor(
    /** The page frame number in the wrong state. */
    readonly pfn: number,
    message: string,
  ) {
    super("EINVAL", message);
  }
}
