import { z } from "zod";

// The two schema shapes every structured input of dmasim uses (the platform spec, kernel and device
// options, scenario files), so that each reports its issues in the same words.

/**
 * A strict object: an unknown key is an issue that lists the allowed ones (a typo must never run as a
 * default silently); `expected` describes the object for anything else (not an object at all).
 */
export function strictRecord<T extends z.ZodRawShape>(shape: T, expected: string) {
  const allowed = Object.keys(shape).join(", ");
  return z.strictObject(shape, { error: (iss) => (iss.code === "unrecognized_keys" ? `no such field (allowed: ${allowed})` : expected) }).readonly();
}

/** A number for which `ok` holds; `expected` for anything else (not a number, NaN, out of range). */
export function numberWhere(ok: (v: number) => boolean, expected: string) {
  return z.number({ error: expected }).refine(ok, { error: expected });
}
