/**
 * Bad input to the scatterlist model: an index outside the table, a length that is not a byte count, a
 * table used after sgFreeTable. The kernel would corrupt memory or crash; dmasim refuses before changing
 * anything, naming the argument, its value and what was expected.
 */
export class ScatterlistError extends Error {
  override readonly name = "ScatterlistError";
  constructor(
    readonly code: "EINVAL" | "EBUSY" | "ENOMEM",
    readonly fn: string,
    readonly argument: string,
    readonly value: unknown,
    expected: string,
  ) {
    super(`${fn}: ${argument} = ${show(value)} is invalid: expected ${expected}`);
  }
}

function show(v: unknown): string {
  if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return v < 4096 ? String(v) : `0x${v.toString(16)}`;
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "object" && v !== null) return `[object ${(v as { constructor?: { name?: string } }).constructor?.name ?? "Object"}]`;
  return typeof v === "string" ? JSON.stringify(v) : String(v);
}

export function checkCount(fn: string, name: string, v: number, min: number): void {
  if (!Number.isSafeInteger(v) || v < min) throw new ScatterlistError("EINVAL", fn, name, v, `an integer >= ${min}`);
}
