import type { IommuMode } from "@dmasim/dma";
import type { TraceEvent as DmaBufTraceEvent } from "@dmasim/dmabuf";
import { ScenarioError } from "./errors.js";
import type { Host } from "./run/context.js";
import type { RunResult } from "./run/result.js";
import type { Api, Scenario } from "./types.js";

/** The `format` field of every run log. */
export const RUN_LOG_FORMAT = "dmasim-run-log";
/**
 * The `version` of the run log this package writes. The envelope is `{ format, version, scenario, runs }`,
 * each run `{ label, api, iommu, events, droppedEvents, result }`, `events` the platform's trace events
 * (`RunLogEvent`: `type`, virtual time `t` in ns, and the fields of that type, as each package declares
 * its events) in the order they were emitted. A reader refuses a version it does not know.
 *
 * Version 2 (this one) adds the IOTLB lookups and fills, page-table pages, leaf sizes, IOVA allocation
 * and release, the route of each TLP, and the events of hmm-odp and dmabuf; version 1 had dma's and the
 * layers below it only, without those.
 */
export const RUN_LOG_VERSION = 2;

/**
 * An event of a run: the union of the events of every package a run builds (dmabuf's union holds
 * hmm-odp's, dma's and those of the layers below). scatterlist, bio, nvme and rdma report their calls as
 * dma's `api` slices.
 */
export type RunLogEvent = DmaBufTraceEvent;

/** One run of a scenario (one API × IOMMU mode) with every event its platform emitted. */
export interface RunLogEntry {
  /** `<scenario> <api>/<iommu>`, as the Chrome trace names the run. */
  readonly label: string;
  /** The mapping API of this run. */
  readonly api: Api;
  /** The IOMMU mode of this run. */
  readonly iommu: IommuMode;
  /** The trace events of the run, in order. */
  readonly events: readonly RunLogEvent[];
  /** Events not kept because the run emitted more than the recorder's limit. */
  readonly droppedEvents: number;
  /** The run's checks, counters and modelled time; absent when the run never returned a result. */
  readonly result?: RunResult;
}

/** A recorded command: the scenario as it ran and each of its runs. Plain JSON. */
export interface RunLog {
  /** Identifies the file as a dmasim run log. */
  readonly format: typeof RUN_LOG_FORMAT;
  /** Version of the log's layout (RUN_LOG_VERSION). */
  readonly version: typeof RUN_LOG_VERSION;
  /** The scenario as it ran (after defaults and overrides). */
  readonly scenario: Scenario;
  /** Each run, in the order the sweep ran them. */
  readonly runs: readonly RunLogEntry[];
}

interface Recording {
  readonly label: string;
  readonly events: RunLogEvent[];
  dropped: number;
  readonly detach: () => void;
}

/**
 * Records the trace events of every run a scenario makes. Pass `attach` as the run context's `onHost`
 * (`runScenario(s, { api, iommu, onHost: rec.attach })` or `sweep(s, axes, { onHost: rec.attach })`),
 * then `toJSON(results)` gives the log. At most `maxEventsPerRun` events are kept per run (default
 * 1,000,000); the rest are counted in `droppedEvents`.
 */
export class RunLogRecorder {
  readonly #scenario: Scenario;
  readonly #max: number;
  readonly #runs: Recording[] = [];

  constructor(scenario: Scenario, options: { readonly maxEventsPerRun?: number } = {}) {
    const max = options.maxEventsPerRun ?? 1_000_000;
    if (!Number.isSafeInteger(max) || max < 0) throw new ScenarioError("maxEventsPerRun", max, "a count of events >= 0");
    this.#scenario = scenario;
    this.#max = max;
  }

  /** Starts recording one run's platform. Bound, so it can be handed on as a callback. */
  readonly attach = (label: string, host: Host): void => {
    const events: RunLogEvent[] = [];
    const rec: Recording = {
      label,
      events,
      dropped: 0,
      detach: host.kernel.trace.events.subscribe((e) => {
        if (events.length < this.#max) events.push({ ...e });
        else rec.dropped++;
      }),
    };
    this.#runs.push(rec);
  };

  /** Stops listening to every platform attached so far. */
  detach(): void {
    for (const r of this.#runs) r.detach();
  }

  /** The log, each recorded run paired with its result (the n-th run with api/iommu of its label). */
  toJSON(results: readonly RunResult[] = []): RunLog {
    const left = [...results];
    const runs = this.#runs.map((r): RunLogEntry => {
      const at = left.findIndex((x) => r.label === `${x.scenario} ${x.api}/${x.iommu}`);
      const result = at < 0 ? undefined : left.splice(at, 1)[0];
      const [api, iommu] = (r.label.split(" ").pop() ?? "").split("/") as [Api, IommuMode];
      return { label: r.label, api, iommu, events: r.events, droppedEvents: r.dropped, ...(result === undefined ? {} : { result }) };
    });
    return { format: RUN_LOG_FORMAT, version: RUN_LOG_VERSION, scenario: this.#scenario, runs };
  }
}

/**
 * Checks the envelope of a parsed run log (format, version, runs) and returns it typed; the events are
 * taken as written. A log of another version is refused rather than misread.
 */
export function readRunLog(input: unknown): RunLog {
  if (typeof input !== "object" || input === null || Array.isArray(input)) throw new ScenarioError("log", input, `an object with format "${RUN_LOG_FORMAT}"`);
  const o = input as Record<string, unknown>;
  if (o.format !== RUN_LOG_FORMAT) throw new ScenarioError("log.format", o.format, JSON.stringify(RUN_LOG_FORMAT));
  if (o.version !== RUN_LOG_VERSION) throw new ScenarioError("log.version", o.version, `${RUN_LOG_VERSION} (the version this reader knows)`);
  if (!Array.isArray(o.runs)) throw new ScenarioError("log.runs", o.runs, "a list of runs");
  if (typeof o.scenario !== "object" || o.scenario === null) throw new ScenarioError("log.scenario", o.scenario, "the scenario object");
  return input as RunLog;
}
