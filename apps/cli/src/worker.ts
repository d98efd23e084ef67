// The worker thread's side of a parallel demo or compare: one configuration per call, in an isolate of
// its own (the pool starts a fresh worker for every task), so no configuration runs on code another
// configuration's runs have shaped in the JIT.
import { runScenario } from "@dmasim/scenario";
import type { RunResult } from "@dmasim/scenario";
import { errorReport } from "./errors.js";
import type { ErrorReport } from "./errors.js";
import type { Configuration } from "./parallel.js";

/** What a worker hands back: plain data, since class instances do not cross the thread boundary. */
export type ConfigurationOutcome = { readonly result: RunResult } | { readonly error: ErrorReport };

export default function runConfiguration(c: Configuration): ConfigurationOutcome {
  try {
    // The same call sweep() makes for this configuration, so the result is the serial one.
    return { result: runScenario(c.scenario, { api: c.api, iommu: c.iommu, ...(c.costProfile === undefined ? {} : { costProfile: c.costProfile }) }) };
  } catch (e) {
    return { error: errorReport(e) };
  }
}
