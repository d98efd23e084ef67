const BDF_RE = /^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/;

/** Whether `s` is a canonical BDF ("dddd:bb:dd.f", lowercase hex, device 00..1f), as pci_name() prints it. */
export function isBdf(s: unknown): s is string {
  if (typeof s !== "string") return false;
  const m = BDF_RE.exec(s);
  return m !== null && Number.parseInt(m[3] ?? "", 16) <= 0x1f;
}

/** "dddd:bb" of a valid BDF: the domain and bus, which functions of one device share. */
export function bdfBus(bdf: string): string {
  return bdf.slice(0, 7);
}
