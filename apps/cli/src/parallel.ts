import { availableParallelism } from "node:os";
import { Tinypool } from "tinypool";
import type { CostProfileName } from "@dmasim/dma";
import type { Api, Axes, RunResult, Scenario } from "@dmasim/scenario";
import type { IommuMode } from "@dmasim/dma";
import { ReportedError } from "./errors.js";
import type { ConfigurationOutcome } from "./worker.js";

/** One run of a sweep: a scenario on one API and one IOMMU mode. Plain data, posted to a worker. */
export interface Configuration {
  readonly scenario: Scenario;
  readonly api: Api;
  readonly iommu: IommuMode;
  readonly costProfile?: CostProfileName;
}

/** Where the worker entry is and what its thread starts with (a test running the sources passes a loader). */
export interface WorkerOptions {
  readonly filename: URL;
  readonly execArgv: readonly string[];
  /**
   * A fresh thread (a V8 isolate of its own) per configuration, so no run executes code the JIT shaped
   * for another; false reuses each thread for many configurations, paying the module load once.
   */
  readonly isolate: boolean;
}

/** The compiled worker next to this file: dist/worker.js for the built command. */
export function defaultWorkerOptions(): WorkerOptions {
  return { filename: new URL("./worker.js", import.meta.url), execArgv: [], isolate: true };
}

/** --jobs when not given: every core the process may use. */
export function defaultJobs(): number {
  return availableParallelism();
}

/** The configurations of a sweep in sweep()'s order: IOMMU mode outermost, then the API. */
export function configurations(s: Scenario, axes: Axes, costProfile?: CostProfileName): Configuration[] {
  return axes.iommu.flatMap((iommu) => axes.api.map((api) => ({ scenario: s, api, iommu, ...(costProfile === undefined ? {} : { costProfile }) })));
}

/** The label sweep() gives a configuration in its progress reports. */
export function configurationLabel(c: Configuration): string {
  return `${c.scenario.name} ${c.api}/${c.iommu}`;
}

/**
 * Runs every configuration on up to `jobs` worker threads, a fresh one per configuration, and returns the
 * results in the order given, as a serial sweep would. When runs fail, the error reported is that of the
 * first failing configuration in that order: the one a serial run would have stopped at.
 */
export async function runConfigurations(
  list: readonly Configuration[],
  jobs: number,
  worker: WorkerOptions,
  onDone?: (done: number, total: number, label: string) => void,
): Promise<RunResult[]> {
  const pool = new Tinypool({
    filename: worker.filename.href,
    runtime: "worker_threads",
    isolateWorkers: worker.isolate,
    minThreads: 0,
    maxThreads: Math.max(1, Math.min(jobs, list.length)),
    execArgv: [...worker.execArgv],
  });
  let done = 0;
  try {
    const outcomes = await Promise.all(
      list.map(async (c) => {
        const outcome = (await pool.run(c)) as ConfigurationOutcome;
        done += 1;
        onDone?.(done, list.length, configurationLabel(c));
        return outcome;
      }),
    );
    return outcomes.map((o) => {
      if ("error" in o) throw new ReportedError(o.error);
      return o.result;
    });
  } finally {
    await pool.destroy();
  }
}
