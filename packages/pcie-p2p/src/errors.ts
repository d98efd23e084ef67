/** Formats an address for messages: hex, as kernel logs print bus and physical addresses. */
export function hex(n: number): string {
  return Number.isSafeInteger(n) && n >= 0 ? `0x${n.toString(16)}` : String(n);
}

function show(value: unknown): string {
  if (typeof value === "number") return Number.isSafeInteger(value) && value >= 4096 ? `${value} (${hex(value)})` : String(value);
  if (typeof value === "string") return JSON.stringify(value);
  if (value === undefined) return "undefined";
  if (typeof value === "function" || typeof value === "symbol") return typeof value;
  try {
    return JSON.stringify(value);
  } catch {
    return typeof value; // a bigint or a cycle
  }
}

/**
 * A platform spec that cannot be built. `path` names the field ("endpoints[2].bars[0].size"), `value`
 * is what was found there; the message adds what was expected. Nothing is built when this is thrown.
 */
export class PlatformSpecError extends Error {
  override readonly name = "PlatformSpecError";
  readonly code = "EINVAL";
  constructor(
    readonly path: string,
    readonly value: unknown,
    expected: string,
  ) {
    super(`spec.${path} = ${show(value)} is invalid: expected ${expected}`);
  }
}

/** errno-style codes of the PCI calls, as pci_p2pdma_add_resource and friends return them. */
export type PciErrorCode = "EINVAL" | "ENODEV" | "EEXIST";

/**
 * Misuse of a built platform (an unknown BDF, a BAR that does not exist, an access of negative length…).
 * The model is left exactly as it was before the call.
 */
export class PciError extends Error {
  override readonly name = "PciError";
  constructor(
    readonly code: PciErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
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
export class PcieAccessError extends Error {
  override readonly name = "PcieAccessError";
  readonly code: "EFAULT" | "EIO" | "EACCES";
  constructor(
    readonly kind: PcieAccessKind,
    readonly device: string,
    readonly access: "read" | "write",
    /** Address the failing TLP carried, as the device issued it (IOVA or bus address). */
    readonly addr: number,
    /** Bytes of the access that completed before the failing TLP. */
    readonly completed: number,
    detail: string,
  ) {
    const code = KIND_CODE[kind];
    super(`${code}: ${device} ${access} at ${hex(addr)} failed (${kind}) after ${completed} bytes: ${detail}`);
    this.code = code;
  }
}
