import { ScenarioError, ScenarioSetupError } from "../errors.js";
import type { Scenario } from "../types.js";
import { runDmabuf } from "./dmabuf.js";
import { runHmm } from "./hmm.js";
import { runNvme } from "./nvme.js";
import { runP2p } from "./p2p.js";
import { runRdmaOdp } from "./rdma.js";
import { check } from "./result.js";
import type { RunContext } from "./context.js";
import type { RunResult } from "./result.js";
import { runSg } from "./sg.js";
import { runSingle } from "./single.js";
import { runStaleWindow } from "./stale-window.js";

function dispatch(s: Scenario, ctx: RunContext): RunResult {
  const w = s.workload;
  switch (w.kind) {
    case "nvme":
      return runNvme(s, w, ctx);
    case "sg":
      return runSg(s, w, ctx);
    case "single":
      return runSingle(s, w, ctx);
    case "p2p":
      return runP2p(s, w, ctx);
    case "stale-window":
      return runStaleWindow(s, w, ctx);
    case "hmm":
      return runHmm(s, w, ctx);
    case "rdma-odp":
      return runRdmaOdp(s, w, ctx);
    case "dmabuf":
      return runDmabuf(s, w, ctx);
  }
}

/**
 * Runs one scenario with one API and one IOMMU mode. A failed check is in the result; so is an error
 * the model raised mid-run (a device access that faulted, a dma-debug error in "throw" mode), as a
 * failed "run completed" check. A scenario that cannot be set up throws ScenarioError/ScenarioSetupError.
 */
export function runScenario(s: Scenario, ctx: RunContext): RunResult {
  try {
    return dispatch(s, ctx);
  } catch (e) {
    if (e instanceof ScenarioError || e instanceof ScenarioSetupError || !(e instanceof Error)) throw e;
    const what = `${e.name}: ${e.message}`;
    return {
      scenario: s.name,
      kind: s.workload.kind,
      api: ctx.api,
      iommu: ctx.iommu,
      ok: false,
      checks: [check("run completed", false, what)],
      mapped: [],
      counters: {},
      apiCalls: {},
      modelledNs: 0,
      assumedNs: 0,
      metrics: {},
    };
  }
}
