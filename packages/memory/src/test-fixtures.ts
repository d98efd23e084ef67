import { expect } from "vitest";
import { Trace } from "@dmasim/trace";
import { GiB, MiB } from "./addresses.js";
import { PhysicalMemory } from "./physical-memory.js";
import type { PhysicalMemoryOptions } from "./physical-memory.js";

/** 2 GiB of RAM at 0, a 1 MiB hole, 1 GiB more RAM above 4 GiB: enough shape for crossing tests. */
export function makeMemory(options: Partial<PhysicalMemoryOptions> = {}): PhysicalMemory {
  return new PhysicalMemory(new Trace(), {
    ram: [
      { base: 0, size: 2 * GiB },
      { base: 4 * GiB, size: 1 * GiB, name: "High RAM" },
    ],
    ...options,
  });
}

export { patternBytes as pattern } from "./pattern.js";

export const HOLE = 2 * GiB + 16 * MiB;

/**
 * Asserts two byte arrays are equal. `toEqual` walks large typed arrays element by element through its
 * generic matcher, which is very slow; this compares natively and reports the first difference.
 */
export function expectBytes(got: Uint8Array, want: Uint8Array): void {
  if (got.length === want.length && Buffer.compare(got, want) === 0) return;
  let i = 0;
  while (i < got.length && i < want.length && got[i] === want[i]) i++;
  expect({ length: got.length, firstDifference: i, got: got[i], want: want[i] }).toEqual({
    length: want.length,
    firstDifference: -1,
    got: undefined,
    want: undefined,
  });
}

/** The PCI device whose BAR the MMIO tests register. */
export const PEER_BDF = "0000:03:00.0";
