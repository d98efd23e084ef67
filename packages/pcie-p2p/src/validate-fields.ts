import { acsBits } from "./acs.js";
import { PlatformSpecError } from "./errors.js";

export const PAGE = 4096;
export const MAX_ADDR = 2 ** 53;

export function fail(path: string, value: unknown, expected: string): never {
  throw new PlatformSpecError(path, value, expected);
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function checkKeys(obj: Record<string, unknown>, path: string, allowed: readonly string[]): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) fail(`${path}${path === "" ? "" : "."}${k}`, obj[k], `no such field (allowed: ${allowed.join(", ")})`);
  }
}

export function optBool(obj: Record<string, unknown>, key: string, path: string): boolean | undefined {
  const v = obj[key];
  if (v === undefined) return undefined;
  if (typeof v !== "boolean") fail(path, v, "true or false");
  return v;
}

export function pageAligned(v: unknown, path: string, what: string, min: number): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min || v % PAGE !== 0 || v > MAX_ADDR) {
    fail(path, v, `${what}: a multiple of 4096${min > 0 ? " > 0" : " >= 0"} below 2^53`);
  }
  return v;
}

export function id(v: unknown, path: string): string {
  if (typeof v !== "string" || v === "") fail(path, v, "a non-empty string id");
  return v;
}

export function arrayOf(v: unknown, path: string): readonly unknown[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) fail(path, v, "an array");
  return v as readonly unknown[];
}

export function acs(v: unknown, path: string): number {
  if (v === undefined) return 0;
  if (!isObject(v)) fail(path, v, "an object of ACS bits { sv, rr, cr, uf, ec }");
  checkKeys(v, path, ["sv", "rr", "cr", "uf", "ec"]);
  for (const k of Object.keys(v)) optBool(v, k, `${path}.${k}`);
  return acsBits(v);
}
