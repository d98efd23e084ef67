import type { ResolvedBar, ResolvedIommu, ResolvedSpec } from "./resolved.js";
import type { BarSpec, IommuSpec } from "./spec.js";
import { at } from "./util.js";
import { MAX_ADDR, PAGE, arrayOf, checkKeys, fail, id, isObject, optBool, pageAligned } from "./validate-fields.js";

export function memory(spec: Record<string, unknown>): { ram: ResolvedSpec["ram"]; confidential: boolean } {
  const m = spec.memory;
  if (!isObject(m)) fail("memory", m, "an object with ramBytes or ram");
  checkKeys(m, "memory", ["ramBytes", "ram", "confidential"]);
  const confidential = optBool(m, "confidential", "memory.confidential") ?? false;
  if ((m.ramBytes === undefined) === (m.ram === undefined)) {
    fail("memory", m, "exactly one of ramBytes (RAM from 0) or ram (explicit regions)");
  }
  if (m.ramBytes !== undefined) {
    return { ram: [{ base: 0, size: pageAligned(m.ramBytes, "memory.ramBytes", "bytes of RAM", 1), name: "System RAM" }], confidential };
  }
  const list = arrayOf(m.ram, "memory.ram");
  if (list.length === 0) fail("memory.ram", m.ram, "at least one region");
  const ram = list.map((r, i) => {
    const p = `memory.ram[${i}]`;
    if (!isObject(r)) fail(p, r, "an object { base, size, name? }");
    checkKeys(r, p, ["base", "size", "name"]);
    const base = pageAligned(r.base, `${p}.base`, "a physical address", 0);
    const size = pageAligned(r.size, `${p}.size`, "a size", 1);
    if (base + size > MAX_ADDR) fail(`${p}.size`, size, `a region ending below 2^53 (base ${base})`);
    if (r.name !== undefined && typeof r.name !== "string") fail(`${p}.name`, r.name, "a string");
    return { base, size, name: r.name ?? `System RAM ${i}`, path: p };
  });
  const sorted = [...ram].sort((a, b) => a.base - b.base);
  for (let i = 1; i < sorted.length; i++) {
    const prev = at(sorted, i - 1);
    const cur = at(sorted, i);
    if (cur.base < prev.base + prev.size) fail(`${cur.path}.base`, cur.base, `a region not overlapping ${prev.path}`);
  }
  return { ram: ram.map(({ base, size, name }) => ({ base, size, name })), confidential };
}

const IOMMU_KEYS = ["name", "iotlbEntries", "iotlbWays", "pgsizeBitmap", "requiresSyncMap", "vaBits"] as const;

export function iommus(spec: Record<string, unknown>): ResolvedIommu[] {
  const v = spec.iommu;
  if (v === undefined) return [];
  const list: readonly unknown[] = Array.isArray(v) ? (v as unknown[]) : [v];
  const out: ResolvedIommu[] = [];
  list.forEach((u, i) => {
    const p = Array.isArray(v) ? `iommu[${i}]` : "iommu";
    if (!isObject(u)) fail(p, u, "an object of IOMMU options ({} for the defaults)");
    checkKeys(u, p, IOMMU_KEYS);
    const name = u.name === undefined ? `iommu${i}` : id(u.name, `${p}.name`);
    if (out.some((o) => o.name === name)) fail(`${p}.name`, name, "a name no other IOMMU unit has");
    for (const k of ["iotlbEntries", "iotlbWays", "pgsizeBitmap", "vaBits"] as const) {
      const x = u[k];
      if (x !== undefined && (typeof x !== "number" || !Number.isSafeInteger(x) || x <= 0)) fail(`${p}.${k}`, x, "a positive integer");
    }
    optBool(u, "requiresSyncMap", `${p}.requiresSyncMap`);
    out.push({ ...(u as IommuSpec), name });
  });
  return out;
}

export function unitRef(v: unknown, path: string, units: readonly ResolvedIommu[]): number {
  if (v === null) return -1;
  const i = units.findIndex((u) => u.name === v);
  if (i < 0) fail(path, v, units.length === 0 ? "null: the spec has no IOMMU" : `null or one of the IOMMU units (${units.map((u) => u.name).join(", ")})`);
  return i;
}

export function bars(v: unknown, path: string): ResolvedBar[] {
  const out: ResolvedBar[] = [];
  arrayOf(v, path).forEach((b, i) => {
    const p = `${path}[${i}]`;
    if (!isObject(b)) fail(p, b, "an object { size, index?, phys? }");
    checkKeys(b, p, ["index", "size", "phys"]);
    const bar = b as Partial<BarSpec>;
    const index = bar.index ?? i;
    if (!Number.isInteger(index) || index < 0 || index > 5) fail(`${p}.index`, bar.index, "a BAR number 0..5");
    if (out.some((o) => o.index === index)) fail(`${p}.index`, index, "a BAR number not used twice by one endpoint");
    const size = bar.size;
    if (typeof size !== "number" || size < PAGE || !isPow2(size)) fail(`${p}.size`, size, "a power of two >= 4096 bytes");
    let phys: number | undefined;
    if (bar.phys !== undefined) {
      phys = bar.phys;
      if (!Number.isSafeInteger(phys) || phys < 0 || phys % size !== 0) fail(`${p}.phys`, phys, `a physical address aligned to the BAR size (${size})`);
    }
    out.push({ index, size, phys, path: p });
  });
  return out;
}

export function isPow2(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

/**
 * Checks every field of a spec and fills the defaults. Throws PlatformSpecError naming the first bad
 * field. References (parents, IOMMU units) are resolved here; address layout is bars.ts's job and graph
 * shape (cycles) topology.ts's.
 */
