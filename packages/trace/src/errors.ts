/**
 * The one error base of dmasim, and the one formatter of values in messages.
 *
 * Every error a dmasim package throws is a `DmasimError`. Each package subclasses it in two shapes:
 * - **bad input** (`DmasimInputError`): `(fn, argument, value, expected)` — the caller passed something that
 *   is not a valid value at all; `code` is `EINVAL`. The message names the function, the argument, the value
 *   as `showValue` prints it, and what was expected.
 * - **state / kernel errors** (`DmasimStateError`): `(code, message)` — a valid call the model refuses in the
 *   state it is in. `code` is the errno the kernel would return where it has one (`ENOMEM`, `EBUSY`, `EIO`,
 *   …), otherwise a documented dmasim code starting with `E` (for example `EDMADEBUG`).
 *
 * Catch `DmasimError` to catch anything the model throws; test `code` to tell kinds apart.
 */
export class DmasimError extends Error {
  override readonly name: string = "DmasimError";
  constructor(
    /** The errno the kernel would return (`EINVAL`, `ENOMEM`, `EBUSY`…) or a documented dmasim code (`E…`). */
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Bad input: names the function, the argument, the value and what was expected. `code` is `EINVAL`. */
export class DmasimInputError extends DmasimError {
  override readonly name: string = "DmasimInputError";
  constructor(
    /** The function that refused the argument (`dmaMapPage`); `""` when the message names no function. */
    readonly fn: string,
    /** The refused argument, or a path into it for structured input (`options.sites.fail_iova.times`). */
    readonly argument: string,
    /** The value that was passed, as received; the message shows it with `showValue`. */
    readonly value: unknown,
    /** What a valid value looks like, in words (`a page-aligned physical address`). */
    readonly expected: string,
  ) {
    super("EINVAL", `${fn ? `${fn}: ` : ""}${argument} = ${showValue(value)} is invalid: expected ${expected}`);
  }
}

/** A valid call refused in the model's current state; `code` is an errno or a documented dmasim code. */
export class DmasimStateError extends DmasimError {
  override readonly name: string = "DmasimStateError";
}

/** Thrown when a trace-layer call gets an argument it cannot use; names the argument and the value. */
export class TraceInputError extends DmasimInputError {
  override readonly name: string = "TraceInputError";
  constructor(argument: string, value: unknown, expected: string) {
    super("", argument, value, expected);
  }
}

/** `0x…` for an address in a message; anything that is not a safe non-negative integer is shown as is. */
export function hex(n: number): string {
  return Number.isSafeInteger(n) && n >= 0 ? `0x${n.toString(16)}` : String(n);
}

/** `0x` and at least four hex digits (register-style values, PCI IDs). */
export function hex16(n: number): string {
  return Number.isSafeInteger(n) && n >= 0 ? `0x${n.toString(16).padStart(4, "0")}` : String(n);
}

/**
 * A 64-bit value as the kernel prints one with `%016llx` (dma-debug's `[device address=0x…]`): 16 hex
 * digits; a negative value (DMA_MAPPING_ERROR is -1 in dmasim) as all ones, as the u64 it stands for.
 */
export function hex64(n: number): string {
  return n < 0 ? "0xffffffffffffffff" : `0x${n.toString(16).padStart(16, "0")}`;
}

/**
 * Any value as a message shows it: a safe non-negative integer in hex (addresses and sizes), other numbers
 * and bigints as they print, strings quoted, arrays and objects as JSON (their class name if they cannot be),
 * functions and symbols by their description. Never throws.
 */
export function showValue(v: unknown): string {
  switch (typeof v) {
    case "number":
      return Number.isSafeInteger(v) && v >= 0 ? `0x${v.toString(16)}` : String(v);
    case "bigint":
      return `${v}n`;
    case "string":
      return JSON.stringify(v.length > 200 ? `${v.slice(0, 200)}…` : v);
    case "symbol":
      return v.toString();
    case "function":
      return `[function ${v.name || "anonymous"}]`;
    case "object": {
      if (v === null) return "null";
      if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${(v as unknown as { length?: number }).length ?? v.byteLength})`;
      try {
        const s = JSON.stringify(v) as string | undefined;
        if (s === undefined) return Object.prototype.toString.call(v);
        return s.length > 200 ? `${s.slice(0, 200)}…` : s;
      } catch {
        const ctor = (v as { constructor?: { name?: string } }).constructor?.name;
        return ctor ? `[object ${ctor}]` : Object.prototype.toString.call(v);
      }
    }
    default:
      return String(v);
  }
}
