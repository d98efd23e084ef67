import { DmasimInputError, DmasimInputIssuesError, DmasimStateError, hex } from "@dmasim/trace";
import type { InputIssue } from "@dmasim/trace";

/**
 * A platform spec that cannot be built. `issues` lists every problem found, each with its `path` from the
 * root ("endpoints[2].bars[0].size"), the value found there and what was expected; `path` and `value` are
 * the first one's. Nothing is built when this is thrown.
 */
export class PlatformSpecError extends DmasimInputIssuesError {
  override readonly name: string = "PlatformSpecError";
  declare readonly code: "EINVAL";
  /** Path of the first issue from the spec's root (`endpoints[2].bars[0].size`); `""` for the spec itself. */
  readonly path: string;
  constructor(path: string, value: unknown, expected: string, more: readonly InputIssue[] = []) {
    super("", "spec", [{ path, value, expected }, ...more]);
    this.path = path;
  }

  /** The error for a non-empty list of issues. */
  static of(issues: readonly InputIssue[]): PlatformSpecError {
    const [first, ...more] = issues;
    return first === undefined ? new PlatformSpecError("", undefined, "a valid platform spec") : new PlatformSpecError(first.path, first.value, first.expected, more);
  }
}

/** errno-style codes of the PCI calls, as pci_p2pdma_add_resource and friends return them. */
export type PciErrorCode = "EINVAL" | "ENODEV" | "EEXIST";

/**
 * Misuse of a built platform (an unknown BDF, a BAR that does not exist, an access of negative length…).
 * The model is left exactly as it was before the call.
 */
export class PciError extends DmasimStateError {
  override readonly name: string = "PciError";
  declare readonly code: PciErrorCode;
  constructor(code: PciErrorCode, message: string) {
    super(code, `${code}: ${message}`);
  }

  /** `instanceof PciError` also holds for `PciInputError`, so one catch still takes every PCI call's error. */
  static override [Symbol.hasInstance](x: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(this, x) || (this === PciError && x instanceof PciInputError);
  }
}

/** Bad input to a PCI call or a device access: names the function, the argument, the value and what was expected. */
export class PciInputError extends DmasimInputError {
  override readonly name: string = "PciInputError";
  declare readonly code: "EINVAL";
}

/**
 * Why a device access did not complete:
 * - "iommu-fault": the IOMMU refused the translation (not mapped, no permission, device blocked);
 * - "unsupported-request": nothing claims the address, or a peer BAR is reached through a host bridge
 *   that cannot route peer-to-peer (the completer answers UR);
 * - "private-memory": the target is an encrypted page of a confidential guest, which devices cannot reach.
 */
export type PcieAccessKind = "iommu-fault" | "unsupported-request" | "private-memory";

const KIND_CODE = { "iommu-fault": "EFAULT", "unsupported-request": "EIO", "private-memory": "EACCES" } as const;

/**
 * Thrown by a device read or write when one of its TLPs fails. TLPs before it have completed, as on real
 * hardware: `completed` says how many bytes (from the start of the access) reached their target.
 */
export class PcieAccessError extends DmasimStateError {
  override readonly name: string = "PcieAccessError";
  declare readonly code: "EFAULT" | "EIO" | "EACCES";
  constructor(
    /** Why the TLP failed: an IOMMU fault, an Unsupported Request, or private (encrypted) memory. */
    readonly kind: PcieAccessKind,
    /** BDF of the device whose access failed. */
    readonly device: string,
    /** Whether the device was reading or writing. */
    readonly access: "read" | "write",
    /** Address the failing TLP carried, as the device issued it (IOVA or bus address). */
    readonly addr: number,
    /** Bytes of the access that completed before the failing TLP. */
    readonly completed: number,
    detail: string,
  ) {
    const code = KIND_CODE[kind];
    super(code, `${code}: ${device} ${access} at ${hex(addr)} failed (${kind}) after ${completed} bytes: ${detail}`);
  }
}
