import { hex } from "@dmasim/trace";
import type { InputIssue } from "@dmasim/trace";
import { PlatformSpecError } from "./errors.js";
import type { ResolvedSpec } from "./resolved.js";
import { at } from "./util.js";

export const GiB = 1024 ** 3;
export const TiB = 1024 ** 4;
/** Size of a host bridge's MMIO window when the spec gives none. */
export const DEFAULT_MMIO_WINDOW = TiB;
const MAX_ADDR = 2 ** 53;

export interface Window {
  readonly base: number;
  readonly size: number;
}
export interface PlacedBar {
  readonly index: number;
  readonly phys: number;
  readonly size: number;
}
export interface Layout {
  /** MMIO window of host bridge i (spec order). */
  readonly windows: readonly Window[];
  /** BARs of endpoint i, in spec order. */
  readonly bars: readonly (readonly PlacedBar[])[];
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

function overlaps(a: Window, b: Window): boolean {
  return a.base < b.base + b.size && b.base < a.base + a.size;
}

function range(w: Window): string {
  return `[${hex(w.base)}, ${hex(w.base + w.size)})`;
}

/**
 * Address layout, as firmware and the PCI core would assign it: one MMIO window per host bridge above
 * RAM, and every BAR naturally aligned inside its bridge's window. BARs the spec does not place are
 * assigned largest first, each at the lowest free aligned address, so the layout is deterministic and
 * packs without holes when sizes allow. Every window or BAR that cannot be placed is reported (one
 * PlatformSpecError listing them all); the others are placed as if it were not there.
 */
export function placeBars(spec: ResolvedSpec, endpointHostBridge: readonly number[]): Layout {
  const issues: InputIssue[] = [];
  const fail = (path: string, value: unknown, expected: string): void => {
    issues.push({ path, value, expected });
  };
  const ram: Window[] = spec.ram.map((r) => ({ base: r.base, size: r.size }));
  const explicit: Window[] = [];
  spec.hostBridges.forEach((h) => {
    if (h.mmio === undefined) return;
    const mmio = h.mmio;
    const r = ram.find((x) => overlaps(mmio, x));
    const w = explicit.find((x) => overlaps(mmio, x));
    if (r !== undefined) fail(`${h.path}.mmio`, mmio, `a window not overlapping RAM ${range(r)}`);
    else if (w !== undefined) fail(`${h.path}.mmio`, mmio, `a window not overlapping another host bridge's window ${range(w)}`);
    else explicit.push(mmio);
  });
  let cursor = alignUp(Math.max(...[...ram, ...explicit].map((w) => w.base + w.size)), GiB);
  const windows: Window[] = spec.hostBridges.map((h) => {
    if (h.mmio !== undefined) return h.mmio;
    const w = { base: cursor, size: DEFAULT_MMIO_WINDOW };
    if (w.base + w.size > MAX_ADDR) fail(`${h.path}.mmio`, undefined, "an explicit window: no room for a default one below 2^53");
    else if (w.base + h.busOffset < 0 || w.base + w.size + h.busOffset > MAX_ADDR) {
      fail(`${h.path}.busOffset`, h.busOffset, `an offset keeping bus addresses of the window ${range(w)} in 0..2^53`);
    }
    cursor += DEFAULT_MMIO_WINDOW;
    return w;
  });

  const placed: PlacedBar[][] = spec.endpoints.map(() => []);
  const taken: { w: Window; path: string }[][] = windows.map(() => []);
  // Explicit BARs first: they constrain the automatic ones.
  spec.endpoints.forEach((e, i) => {
    const hb = at(endpointHostBridge, i);
    const win = at(windows, hb);
    for (const b of e.bars) {
      if (b.phys === undefined) continue;
      const w = { base: b.phys, size: b.size };
      if (w.base < win.base || w.base + w.size > win.base + win.size) {
        fail(`${b.path}.phys`, b.phys, `a BAR inside its host bridge's MMIO window ${range(win)}`);
        continue;
      }
      const clash = at(taken, hb).find((t) => overlaps(t.w, w));
      if (clash !== undefined) {
        fail(`${b.path}.phys`, b.phys, `a BAR not overlapping ${clash.path} ${range(clash.w)}`);
        continue;
      }
      at(taken, hb).push({ w, path: b.path });
      at(placed, i).push({ index: b.index, phys: b.phys, size: b.size });
    }
  });
  const auto = spec.endpoints.flatMap((e, i) => e.bars.filter((b) => b.phys === undefined).map((b) => ({ b, i })));
  auto.sort((x, y) => y.b.size - x.b.size); // stable: spec order among equal sizes
  for (const { b, i } of auto) {
    const hb = at(endpointHostBridge, i);
    const win = at(windows, hb);
    const list = at(taken, hb);
    let base = alignUp(win.base, b.size);
    for (;;) {
      const w = { base, size: b.size };
      if (base + b.size > win.base + win.size) break;
      const clash = list.find((t) => overlaps(t.w, w));
      if (clash === undefined) break;
      base = alignUp(clash.w.base + clash.w.size, b.size);
    }
    if (base + b.size > win.base + win.size) {
      fail(`${b.path}.size`, b.size, `a BAR that fits: no free naturally aligned range of this size is left in the host bridge's MMIO window ${range(win)}`);
      continue;
    }
    list.push({ w: { base, size: b.size }, path: b.path });
    at(placed, i).push({ index: b.index, phys: base, size: b.size });
  }
  if (issues.length > 0) throw PlatformSpecError.of(issues);
  for (const p of placed) p.sort((x, y) => x.index - y.index);
  return { windows, bars: placed };
}
