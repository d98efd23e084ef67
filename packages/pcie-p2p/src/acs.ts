import type { AcsSpec } from "./spec.js";

/** ACS control bits, with their PCI_ACS_CTRL values (include/uapi/linux/pci_regs.h). */
export const PciAcs = {
  SV: 0x0001,
  TB: 0x0002,
  RR: 0x0004,
  CR: 0x0008,
  UF: 0x0010,
  EC: 0x0020,
  DT: 0x0040,
} as const;
export type PciAcs = (typeof PciAcs)[keyof typeof PciAcs];

/** pci_bridge_has_acs_redir(): the bits that make the kernel refuse bus-address P2P across a port. */
export const ACS_REDIR_MASK = PciAcs.RR | PciAcs.CR | PciAcs.EC;

/**
 * What Linux turns on at a port above an untrusted (external-facing) device, pci_std_enable_acs():
 * source validation, both redirects, upstream forwarding and translation blocking.
 */
export const ACS_EXTERNAL_FACING = PciAcs.SV | PciAcs.RR | PciAcs.CR | PciAcs.UF | PciAcs.TB;

export function acsBits(spec: AcsSpec | undefined): number {
  if (spec === undefined) return 0;
  let bits = 0;
  if (spec.sv === true) bits |= PciAcs.SV;
  if (spec.rr === true) bits |= PciAcs.RR;
  if (spec.cr === true) bits |= PciAcs.CR;
  if (spec.uf === true) bits |= PciAcs.UF;
  if (spec.ec === true) bits |= PciAcs.EC;
  return bits;
}

/** "RR|CR" style, for messages and the README's pictures. */
export function acsToString(bits: number): string {
  const names = (Object.keys(PciAcs) as (keyof typeof PciAcs)[]).filter((k) => (bits & PciAcs[k]) !== 0);
  return names.length === 0 ? "none" : names.join("|");
}
