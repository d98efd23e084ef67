import type { TraceEventBase } from "@dmasim/trace";

/**
 * An event of a run log as the page reads it: a `type`, the virtual time `t` in ns and the fields its
 * package declared. The page knows some types (those it draws views from) and shows every other one
 * generically, type and fields, so a package adding events needs no change here.
 */
export type LogEvent = TraceEventBase;

/** The value of field `name` of an event, or undefined. */
export function field(e: LogEvent, name: string): unknown {
  return (e as unknown as Record<string, unknown>)[name];
}

/** A numeric field, or undefined when absent or not a number. */
export function num(e: LogEvent, name: string): number | undefined {
  const v = field(e, name);
  return typeof v === "number" ? v : undefined;
}

/** A string field, or undefined. */
export function str(e: LogEvent, name: string): string | undefined {
  const v = field(e, name);
  return typeof v === "string" ? v : undefined;
}

/** The fields of an event other than type and t, in the order it has them. */
export function fieldsOf(e: LogEvent): [string, unknown][] {
  return Object.entries(e).filter(([k]) => k !== "type" && k !== "t");
}

const ADDRESS_FIELDS: readonly string[] = ["iova", "phys", "addr", "orig", "slot", "bus", "dma", "va", "pfn"];

/** A field's value as text: addresses in hex, strings as they are, the rest as JSON. */
export function showField(k: string, v: unknown): string {
  if (typeof v === "number" && ADDRESS_FIELDS.includes(k)) return `0x${v.toString(16)}`;
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

/** One line for the timeline: the type, then `field=value` for each field (addresses in hex). */
export function describeEvent(e: LogEvent): string {
  if (e.type === "api") {
    const phase = str(e, "phase");
    const result = num(e, "result");
    const tail = phase === "E" && result !== undefined ? ` → ${result < 0 ? result : `0x${result.toString(16)}`}` : "";
    return `${phase === "B" ? "▶" : "◀"} ${str(e, "name") ?? "?"} ${str(e, "device") ?? ""}${tail}`;
  }
  return `${e.type} ${fieldsOf(e).map(([k, v]) => `${k}=${showField(k, v)}`).join(" ")}`;
}

/**
 * Whether an event reports something that went wrong: a DMA fault, an Unsupported Request, a dma-debug
 * finding, or any event whose type says so (`…fault…`, `…error…`, `…fail…`, `…stale-hit…`): the
 * scrubber's "first failure" jumps to the first of them.
 */
export function isFailure(e: LogEvent): boolean {
  const t = e.type;
  if (t === "iommu.fault" || t === "unsupported-request" || t === "dma-debug") return true;
  if (/fault|error|fail|stale-hit/.test(t)) return true;
  return field(e, "stale") === true;
}

/** Indices of the failure events of a log, in order. */
export function failureIndices(events: readonly LogEvent[]): number[] {
  const out: number[] = [];
  for (const [i, e] of events.entries()) if (isFailure(e)) out.push(i);
  return out;
}

/** The first failure at an index >= from, or -1. */
export function nextFailure(failures: readonly number[], from: number): number {
  let a = 0;
  let b = failures.length;
  while (a < b) {
    const m = (a + b) >>> 1;
    if ((failures[m] ?? 0) >= from) b = m;
    else a = m + 1;
  }
  return a < failures.length ? (failures[a] ?? -1) : -1;
}
