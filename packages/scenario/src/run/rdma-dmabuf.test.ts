import { describe, expect, it } from "vitest";
import { builtinScenario } from "../builtins.js";
import type { Api, Scenario } from "../types.js";
import { ScenarioError } from "../errors.js";
import { validateScenario } from "../validate.js";
import { runScenario } from "./index.js";
import type { RunResult } from "./result.js";

function scenario(name: string): Scenario {
  const s = builtinScenario(name);
  if (s === undefined) throw new Error(`no built-in ${name}`);
  return s;
}

const run = (name: string, api: Api): RunResult => runScenario(scenario(name), { api, iommu: "strict" });
const COMMON = ["every byte verified", "every dmabuf MR registered and every WR as expected", "no fault left", "nothing leaked", "no dma-buf left", "no IOMMU fault", "dma-debug clean", "nothing left mapped"];

function expectAllOk(r: RunResult, names: readonly string[]): void {
  expect(r.checks.filter((c) => !c.ok)).toEqual([]);
  expect(r.ok).toBe(true);
  const have = r.checks.map((c) => c.name);
  for (const n of names) expect(have).toContain(n);
}

describe("rdma-odp workloads: dmabuf MRs", () => {
  for (const api of ["classic", "two-step"] as const) {
    it(`rdma-dmabuf-rc-traffic and rdma-dmabuf-rdma-traffic (${api}): rdma-core's dmabuf traffic, every byte checked`, () => {
      for (const name of ["rdma-dmabuf-rc-traffic", "rdma-dmabuf-rdma-traffic"]) {
        const r = run(name, api);
        expectAllOk(r, COMMON);
        expect(r.metrics).toMatchObject({ verifiedBytes: 2 * 10 * 1024, dmabufMrFaults: 0 });
      }
    });

    it(`rdma-dmabuf-migrate (${api}): one fault per move, each after the copy's fence`, () => {
      const r = run("rdma-dmabuf-migrate", api);
      expectAllOk(r, [...COMMON, "one fault per move"]);
      expect(r.metrics).toMatchObject({ migrations: 5, dmabufMrFaults: 5, verifiedBytes: 2 * 10 * 1024 });
      expect(r.metrics.dmabufFenceWaits).toBeGreaterThan(0);
      expect((r.counters as Readonly<Record<string, number>>).DmabufMrInvalidations).toBe(5);
    });

    it(`rdma-dmabuf-revoke (${api}): the revocable MR dies, the dynamic one comes back, the pinned buffer stays`, () => {
      const r = run("rdma-dmabuf-revoke", api);
      expectAllOk(r, [...COMMON, "revoke completed", "a pinned MR's buffer does not move"]);
      expect(r.metrics).toMatchObject({ revokes: 1, expectedFaultErrors: 1, nicFaultErrors: 0 });
    });
  }

  it("the workload's validation: a dmabuf test needs its exporter (and VFIO for the revoke); other tests take neither", () => {
    const s = scenario("rdma-dmabuf-revoke");
    const bad = (workload: Record<string, unknown>): string[] => {
      try {
        const merged = Object.fromEntries(Object.entries({ ...s.workload, ...workload }).filter(([, v]) => v !== undefined));
        validateScenario({ ...s, workload: merged });
        return [];
      } catch (e) {
        if (!(e instanceof ScenarioError)) throw e;
        return e.issues.map((i) => i.path.replace(/^scenario\./, ""));
      }
    };
    expect(bad({})).toEqual([]);
    expect(bad({ exporter: undefined })).toEqual(["workload.exporter"]);
    expect(bad({ vfioDevice: undefined })).toEqual(["workload.vfioDevice"]);
    expect(bad({ test: "dmabuf-migrate" })).toEqual(["workload.vfioDevice"]);
    expect(bad({ test: "rc-traffic", vfioDevice: undefined })).toEqual(["workload.exporter"]);
    expect(bad({ exporter: "0000:09:00.0" })).toEqual(["workload.exporter"]);
    expect(bad({ implicit: true })).toEqual(["workload.implicit"]);
  });
});
