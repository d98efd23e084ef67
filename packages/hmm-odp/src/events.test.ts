import { describe, expect, it } from "vitest";
import { PAGE_SIZE } from "@dmasim/memory";
import { hmmDmirrorCmd } from "./dmirror.js";
import type { TraceEvent } from "./events.js";
import { hmmRig } from "./test-fixtures.js";

const HMM_TYPES = new Set(["hmm.range-fault", "mmu-notifier.invalidate", "hmm.migrate"]);

describe("hmm-odp trace events", () => {
  it("reports the device's hmm_range_fault, a migration to device memory, and the invalidations on munmap", () => {
    const { mm, open, kernel } = hmmRig();
    const d = open();
    const npages = 4;
    const ptr = mm.mmap(npages * PAGE_SIZE);
    const seen: TraceEvent[] = [];
    const off = kernel.trace.events.subscribe((e) => seen.push(e));
    expect(d.read(hmmDmirrorCmd(ptr, npages))).toBe(0);
    expect(d.migrateToDev(hmmDmirrorCmd(ptr, npages))).toBe(0);
    expect(mm.munmap(ptr, npages * PAGE_SIZE)).toBe(0);
    off();
    const got = seen.filter((e) => HMM_TYPES.has(e.type));
    const fault = got.find((e) => e.type === "hmm.range-fault");
    expect(fault).toMatchObject({ mm: mm.name, start: ptr, end: ptr + npages * PAGE_SIZE, result: 0 });
    const migrate = got.find((e) => e.type === "hmm.migrate");
    expect(migrate).toMatchObject({ mm: mm.name, start: ptr, npages, pages: npages, to: "device" });
    const unmap = got.filter((e) => e.type === "mmu-notifier.invalidate").at(-1);
    expect(unmap).toMatchObject({ mm: mm.name, start: ptr, end: ptr + npages * PAGE_SIZE, event: "UNMAP", subscribers: 1, result: 0 });
    // In order: the fault comes before the migration, the migration before the munmap's invalidation.
    expect(got.indexOf(fault!)).toBeLessThan(got.indexOf(migrate!));
    expect(got.indexOf(migrate!)).toBeLessThan(got.indexOf(unmap!));
  });

  it("emits nothing when nobody listens", () => {
    const { mm, open, kernel } = hmmRig();
    const d = open();
    const ptr = mm.mmap(PAGE_SIZE);
    expect(d.read(hmmDmirrorCmd(ptr, 1))).toBe(0);
    expect(kernel.trace.events.events()).toEqual([]);
  });
});
