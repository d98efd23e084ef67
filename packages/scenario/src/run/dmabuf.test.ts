import { readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BUILTIN_SCENARIOS } from "../builtins.js";
import { ScenarioError } from "../errors.js";
import { parseScenario } from "../parse.js";
import { sweep } from "../sweep.js";
import type { Scenario } from "../types.js";
import { validateScenario } from "../validate.js";
import { runScenario } from "./index.js";
import type { RunResult } from "./result.js";

// The NIC-importer flows; the NVMe importer's (nvme-*) are tested in dmabuf-nvme.test.ts.
const DMABUF = BUILTIN_SCENARIOS.filter((b) => b.workload.kind === "dmabuf" && !b.workload.flow.startsWith("nvme-"));

function builtin(name: string): Scenario {
  const s = DMABUF.find((b) => b.name === name);
  if (s === undefined) throw new Error(`no built-in ${name}`);
  return s;
}

function run(s: Scenario, api: "classic" | "two-step"): RunResult {
  return runScenario(s, { api, iommu: "strict" });
}

function failed(r: RunResult): string[] {
  return r.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
}

function names(r: RunResult): string[] {
  return r.checks.map((c) => c.name);
}

describe("dmabuf workloads", () => {
  it("are built in: P2P through a switch and the host bridge, a migration, the mixed remap, a VFIO revoke", () => {
    expect(DMABUF.map((s) => s.workload.kind === "dmabuf" && s.workload.flow)).toEqual(["p2p", "p2p", "migrate", "mixed-remap", "vfio-revoke"]);
  });

  for (const s of DMABUF) {
    for (const api of ["classic", "two-step"] as const) {
      it(`${s.name} ${api}: every check holds, the bytes, the rules and the leak checks among them`, () => {
        const r = run(s, api);
        expect(failed(r)).toEqual([]);
        expect(r.ok).toBe(true);
        expect(names(r)).toEqual(expect.arrayContaining(["dma-buf rules clean", "no dma-buf leaked", "nothing left mapped", "no IOMMU fault"]));
        expect(names(r).filter((n) => n.startsWith("importer read the buffer's bytes")).length).toBeGreaterThan(0);
      });
    }
  }

  it("through the switch the importer uses bus addresses: no IOVA, no PTE; through the host bridge one IOVA", () => {
    for (const api of ["classic", "two-step"] as const) {
      const sw = run(builtin("dmabuf-p2p-switch"), api);
      expect(sw.counters.PteWrites ?? 0).toBe(0);
      expect((sw.counters.IovaAllocCache ?? 0) + (sw.counters.IovaAllocTree ?? 0)).toBe(0);
      const hb = run(builtin("dmabuf-p2p-host-bridge"), api);
      expect((hb.counters.IovaAllocCache ?? 0) + (hb.counters.IovaAllocTree ?? 0)).toBe(1);
      expect(hb.counters.PteWrites ?? 0).toBeGreaterThan(0);
    }
  });

  it("a migration copies the buffer twice, invalidates twice, and the importer waited for the copy's fence", () => {
    const r = run(builtin("dmabuf-migrate"), "two-step");
    expect(r.metrics.migratedBytes).toBe(2 * 4 * 1024 * 1024);
    expect(r.metrics.invalidations).toBe(2);
    expect(r.metrics.rebinds).toBe(2);
    expect(r.metrics.fenceWaitNs).toBeGreaterThan(0);
  });

  it("mixed remap: the range list relinks into the importer's IOVA, the sg_table path allocates a new one", () => {
    const s = builtin("dmabuf-mixed-remap");
    const sgt = run(s, "classic").metrics;
    const list = run(s, "two-step").metrics;
    expect([sgt.mapIovaAllocs, list.mapIovaAllocs]).toEqual([1, 1]);
    expect([sgt.mapIotlbSyncs, list.mapIotlbSyncs]).toEqual([1, 1]);
    expect(list.mapPteWrites).toBe(sgt.mapPteWrites);
    expect(sgt.remapIovaAllocs).toBe(1);
    expect(list.remapIovaAllocs).toBe(0);
    // Both unmap with one invalidation of the range; the IOVA allocation is the sg_table path's extra cost.
    expect([sgt.remapIotlbInvalidations, list.remapIotlbInvalidations]).toEqual([1, 1]);
    expect(list.remapModelledNs).toBeLessThan(sgt.remapModelledNs ?? 0);
    // 8 ranges (4 VRAM, 4 RAM) of 16 bytes and a 16-byte header, plus the importer's IOVA state; one sg entry.
    expect(list.metadataBytes).toBeGreaterThanOrEqual(8 * 16 + 16);
    expect(sgt.metadataBytes).toBe(32);
  });

  it("VFIO: two revokes (memory disable, close), each importer unmapped in its callback", () => {
    const r = run(builtin("dmabuf-vfio-revoke"), "classic");
    expect(r.metrics.revokes).toBe(2);
    expect(names(r)).toEqual(expect.arrayContaining(["memory disable revoked the buffer", "no access while revoked", "close revoked for good"]));
  });

  it("a wrong expected route fails the P2P route check", () => {
    const s = builtin("dmabuf-p2p-switch");
    const r = run({ ...s, expect: { mapType: "THRU_HOST_BRIDGE" } }, "two-step");
    expect(r.ok).toBe(false);
    expect(failed(r)).toEqual(["P2P route: pci_p2pdma_map_type is BUS_ADDR, expected THRU_HOST_BRIDGE"]);
  });

  it("a VFIO BAR too small for the two ranges is a failed check, nothing left behind", () => {
    const s = builtin("dmabuf-vfio-revoke");
    const w = s.workload.kind === "dmabuf" ? s.workload : undefined;
    if (w === undefined) throw new Error("not dmabuf");
    const r = run({ ...s, workload: { ...w, bytes: 32 * 1024 * 1024 } }, "classic");
    expect(r.ok).toBe(false);
    expect(failed(r)).toEqual([expect.stringMatching(/^VFIO export: 0000:03:00.0 has no BAR 0 of at least/)]);
  });

  it("validation: the exporter must be on the platform; blockBytes and mapType do not go with vfio-revoke", () => {
    const s = builtin("dmabuf-vfio-revoke");
    const w = s.workload.kind === "dmabuf" ? s.workload : undefined;
    if (w === undefined) throw new Error("not dmabuf");
    const paths = (input: unknown): string[] => {
      try {
        validateScenario(input);
      } catch (e) {
        if (e instanceof ScenarioError) return e.issues.map((i) => i.path);
        throw e;
      }
      return [];
    };
    expect(paths({ ...s, workload: { ...w, exporter: "0000:09:00.0" } })).toEqual(["scenario.workload.exporter"]);
    expect(paths({ ...s, workload: { ...w, blockBytes: 4096 } })).toEqual(["scenario.workload.blockBytes"]);
    expect(paths({ ...s, expect: { mapType: "BUS_ADDR" } })).toEqual(["scenario.expect.mapType"]);
    expect(paths({ ...s, workload: { ...w, flow: "teleport" } })).toEqual(["scenario.workload.flow"]);
    expect(paths(JSON.parse(JSON.stringify(s)))).toEqual([]);
  });

  it("any flow, size and block size: both mapping types pass every check (bytes, rules, leaks)", () => {
    const KiB = 1024;
    fc.assert(
      fc.property(
        fc.constantFrom("p2p", "migrate", "mixed-remap", "vfio-revoke"),
        fc.constantFrom("0000:03:00.0", "0000:05:00.0"),
        fc.integer({ min: 1, max: 16 }),
        fc.constantFrom(64 * KiB, 256 * KiB, 1024 * KiB),
        fc.constantFrom("classic", "two-step"),
        (flow, exporter, units, blockBytes, api) => {
          const bytes = flow === "vfio-revoke" ? units * 64 * KiB : units * blockBytes;
          const base = builtin("dmabuf-migrate");
          const s: Scenario = {
            ...base,
            workload: { kind: "dmabuf", device: "0000:02:00.0", exporter, flow, bytes, ...(flow === "vfio-revoke" ? {} : { blockBytes }) },
          };
          const r = run(validateScenario(JSON.parse(JSON.stringify(s))), api);
          expect(failed(r)).toEqual([]);
        },
      ),
      { numRuns: 8, seed: 14 },
    );
  });

  it("the example file (2 MiB blocks, strict and lazy) runs and passes; 2 MiB blocks map as 2 MiB leaves", () => {
    const text = readFileSync(new URL("../../examples/dmabuf-vram-ram.json", import.meta.url), "utf8");
    const s = parseScenario(text, "dmabuf-vram-ram.json");
    const results = sweep(s, { api: ["classic", "two-step"], iommu: ["strict", "lazy"] });
    expect(results.flatMap(failed)).toEqual([]);
    for (const r of results) expect(r.metrics.mapPteWrites).toBe(8);
    expect(results.map((r) => `${r.iommu}/${r.api}: ${r.metrics.remapIovaAllocs}`)).toEqual(["strict/classic: 1", "strict/two-step: 0", "lazy/classic: 1", "lazy/two-step: 0"]);
  });
});
