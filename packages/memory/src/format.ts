/** `0x…` for addresses in messages; keeps non-integers readable instead of printing garbage digits. */
export function hex(n: number): string {
  return Number.isSafeInteger(n) && n >= 0 ? `0x${n.toString(16)}` : String(n);
}
