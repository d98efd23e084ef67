import type { IommuMode } from "@dmasim/dma";
import { runScenario } from "./run/index.js";
import type { RunContext } from "./run/context.js";
import type { RunResult } from "./run/result.js";
import { ScenarioError } from "./errors.js";
import { APIS, IOMMU_MODES } from "./schema.js";
import type { Api, Scenario } from "./types.js";

/** The two sweep axes: every API × every IOMMU mode listed is one run. */
export interface Axes {
  /** Mapping APIs to run under. */
  readonly api: readonly Api[];
  /** IOMMU modes to run under. */
  readonly iommu: readonly IommuMode[];
}

/** The sweep a scenario asks for (its `axes`), or classic,two-step × strict,lazy. */
export function defaultAxes(s: Scenario): Axes {
  return { api: s.axes?.api ?? APIS, iommu: s.axes?.iommu ?? ["strict", "lazy"] };
}

/** Parses "classic,two-step" for the axis `flag`; unknown or repeated values are a usage error. */
export function parseAxis<T extends string>(flag: string, text: string, choices: readonly T[]): T[] {
  const values = text.split(",").map((v) => v.trim());
  const out: T[] = [];
  for (const v of values) {
    if (!(choices as readonly string[]).includes(v)) throw new ScenarioError(flag, v, `a comma-separated list of ${choices.join(", ")}`);
    if (out.includes(v as T)) throw new ScenarioError(flag, v, "each value once");
    out.push(v as T);
  }
  return out;
}

/** The axes from the CLI's --api and --iommu lists; an axis not given keeps `fallback`'s values. */
export function parseAxes(api: string | undefined, iommu: string | undefined, fallback: Axes): Axes {
  return {
    api: api === undefined ? fallback.api : parseAxis("--api", api, APIS),
    iommu: iommu === undefined ? fallback.iommu : parseAxis("--iommu", iommu, IOMMU_MODES),
  };
}

/** Options of a sweep that apply to every run. */
export interface SweepOptions {
  /** Called once per run when its platform and kernel exist (see RunContext.onHost). */
  readonly onHost?: RunContext["onHost"];
  /** The cost profile every run uses, replacing the scenario's own (the CLI's --profile). */
  readonly costProfile?: RunContext["costProfile"];
  /** Called before each run with its index and the total. */
  readonly onProgress?: (done: number, total: number, label: string) => void;
}

/** Every combination of the axes, IOMMU mode outermost, each on a fresh platform. */
export function sweep(s: Scenario, axes: Axes, options: SweepOptions = {}): RunResult[] {
  const total = axes.api.length * axes.iommu.length;
  const out: RunResult[] = [];
  for (const iommu of axes.iommu) {
    for (const api of axes.api) {
      options.onProgress?.(out.length, total, `${s.name} ${api}/${iommu}`);
      out.push(
        runScenario(s, {
          api,
          iommu,
          ...(options.onHost === undefined ? {} : { onHost: options.onHost }),
          ...(options.costProfile === undefined ? {} : { costProfile: options.costProfile }),
        }),
      );
    }
  }
  options.onProgress?.(total, total, s.name);
  return out;
}
