import { writeFileSync } from "node:fs";
import { installedSchemaUrl, outputProblem } from "./files.js";
import { parseArgs } from "node:util";
import { join } from "node:path";
import { COST_PROFILE_NAMES, isCostProfileName } from "@dmasim/dma";
import type { CostProfileName } from "@dmasim/dma";
import { CALIBRATION_PROFILES, caseNames, checkExpectations, measureCases, parseExpectation, priceCalibration, publishedExpectations } from "./calibrate.js";
import { renderSweep, sweepAssumed } from "./calibrate-sweep.js";
import { renderCalibration } from "./calibrate-render.js";
import { ChromeTraceRecorder } from "./chrome-trace.js";
import { demoSection, runDemo, renderDemo } from "./demo.js";
import type { DemoSection } from "./demo.js";
import { configurations, defaultJobs, defaultWorkerOptions, runConfigurations } from "./parallel.js";
import type { WorkerOptions } from "./parallel.js";
import { HELP } from "./help.js";
import { cliJson } from "./json-output.js";
import { EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE, errorReport, OptionError, UsageError } from "./errors.js";
import { loadScenario } from "./load.js";
import { checkedSite, installedExplorerSite, recordForExplorer, scenarioScript, startExploreServer, writeExplorerSite } from "./explore.js";
import type { ExploreServer } from "./explore.js";
import { readingNote, renderRun, renderScenario } from "./render.js";
import { cliVersion } from "./version.js";
import { BUILTIN_SCENARIOS, builtinScenario, defaultAxes, parseAxes, runScenario, RunLogRecorder, ScenarioError, sweep } from "@dmasim/scenario";
import type { RunContext, RunResult, Scenario } from "@dmasim/scenario";

/** Where the command writes; tests pass their own. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** Whether stderr is a terminal (the progress bar is drawn only then). */
  readonly stderrIsTTY: boolean;
  writeFile(path: string, data: string): void;
  /** Why `path` cannot take an output file, or undefined when it can. */
  outputProblem(path: string): string | undefined;
  /** Where scenario.schema.json is (the `$schema` that `show` writes). */
  readonly schemaUrl: string;
  /** The explorer's static site directory (`explore`); absent: the installed @dmasim/explorer's dist/site. */
  readonly explorerSite?: string;
  /**
   * Called once `explore` serves the page; resolves when it should stop (absent: on SIGINT). Tests
   * fetch from the server, then resolve.
   */
  readonly untilStopped?: (server: ExploreServer) => Promise<void>;
}

export const processIo: Io = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  // isTTY is undefined, not false, on a pipe or a file, whatever the typings say.
  stderrIsTTY: (process.stderr.isTTY as boolean | undefined) === true,
  writeFile: (p, d) => {
    writeFileSync(p, d);
  },
  outputProblem,
  schemaUrl: installedSchemaUrl(),
};

/** The dmasim command. Returns the exit status. */
/**
 * The dmasim command, in-process and serial whatever --jobs says (what tests and programs embedding the
 * command call). Returns the exit status.
 */
export function main(argv: readonly string[], io: Io = processIo): number {
  try {
    const status = dispatch(argv, io, undefined);
    // Without worker options no command goes asynchronous.
    if (typeof status !== "number") throw new TypeError("a command went asynchronous in the serial entry");
    return status;
  } catch (e) {
    const { status, text } = errorReport(e);
    io.err(text);
    return status;
  }
}

/**
 * The dmasim command as the binary runs it: demo and compare run their configurations on worker threads
 * (--jobs, default every core), each thread running configuration after configuration (--isolate-workers: a fresh thread per configuration). Output and exit status are those of
 * main(). `worker` says where the worker entry is (the built dist/worker.js unless given).
 */
export async function mainParallel(argv: readonly string[], io: Io = processIo, worker: WorkerOptions = defaultWorkerOptions()): Promise<number> {
  try {
    return await dispatch(argv, io, worker);
  } catch (e) {
    const { status, text } = errorReport(e);
    io.err(text);
    return status;
  }
}

type Values = ReturnType<typeof parseCommandLine>["values"];

/** node:util parseArgs over the command's options; a parse failure is a usage error. */
function parseCommandLine(argv: readonly string[]) {
  try {
    return parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        json: { type: "boolean" },
        jobs: { type: "string" },
        "isolate-workers": { type: "boolean" },
        trace: { type: "string" },
        record: { type: "string" },
        api: { type: "string" },
        iommu: { type: "string" },
        profile: { type: "string" },
        expect: { type: "string", multiple: true },
        sweep: { type: "boolean" },
        out: { type: "string" },
        port: { type: "string" },
        force: { type: "boolean" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean" },
      },
    });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
}

/** One command with its arguments and options, and the recorders its runs feed. */
class Invocation {
  readonly json: boolean;
  readonly #recorder: ChromeTraceRecorder | undefined;
  #log: RunLogRecorder | undefined;

  constructor(
    readonly io: Io,
    readonly command: string,
    readonly rest: readonly string[],
    readonly values: Values,
    readonly worker: WorkerOptions | undefined,
  ) {
    this.json = values.json === true;
    this.#recorder = values.trace === undefined ? undefined : new ChromeTraceRecorder();
  }

  expectArgs(n: number, what: string): void {
    const rest = this.rest;
    if (rest.length !== n) throw new UsageError(`${this.command} takes ${what}; got ${rest.length === 0 ? "nothing" : rest.map((r) => JSON.stringify(r)).join(" ")}`);
  }

  noAxes(): void {
    if (this.values.api !== undefined || this.values.iommu !== undefined) throw new UsageError(`${this.command} takes no --api or --iommu`);
    if (this.values.profile !== undefined && this.command !== "calibrate") throw new UsageError(`${this.command} takes no --profile`);
    if ((this.values.expect !== undefined || this.values.sweep !== undefined) && this.command !== "calibrate") throw new UsageError(`${this.command} takes no --expect or --sweep`);
  }

  /** --profile of run and compare: one cost profile name, replacing the scenario's. */
  profile(): { costProfile?: CostProfileName } {
    if (this.values.expect !== undefined || this.values.sweep !== undefined) throw new UsageError(`${this.command} takes no --expect or --sweep (calibrate does)`);
    const p = this.values.profile;
    if (p === undefined) return {};
    if (!isCostProfileName(p)) throw new OptionError("--profile", p, `a cost profile: ${COST_PROFILE_NAMES.join(", ")}`);
    return { costProfile: p };
  }

  /**
   * The worker threads demo and compare run on, or undefined to run in-process: --jobs 1, the serial
   * entry, or --trace/--record (their recorders watch the hosts of the runs, which live in this thread).
   */
  parallel(): { jobs: number; worker: WorkerOptions } | undefined {
    const jobs = parseJobs(this.values.jobs);
    const { worker, values } = this;
    if (worker === undefined || jobs === 1 || values.trace !== undefined || values.record !== undefined) return undefined;
    return { jobs, worker: values["isolate-workers"] === true ? worker : { ...worker, isolate: false } };
  }

  /** The run context's onHost: the Chrome trace for Perfetto and the run log for programs both listen to every run. */
  hosts(s?: Scenario): { onHost?: NonNullable<RunContext["onHost"]> } {
    if (this.values.record !== undefined && s !== undefined) this.#log = new RunLogRecorder(s);
    const recorder = this.#recorder;
    const listeners = [recorder?.attach.bind(recorder), this.#log?.attach].filter((f) => f !== undefined);
    return listeners.length === 0 ? {} : { onHost: (label, host) => { for (const f of listeners) f(label, host); } };
  }

  /** Writes what was recorded and turns the verdict into the exit status. */
  finish(ok: boolean, results: readonly RunResult[] = []): number {
    const { io, values, json } = this;
    if (this.#log !== undefined && values.record !== undefined) {
      this.#log.detach();
      io.writeFile(values.record, JSON.stringify(this.#log.toJSON(results)));
      if (!json) io.err(`run log written to ${values.record}\n`);
    }
    if (this.#recorder !== undefined && values.trace !== undefined) {
      this.#recorder.detach();
      io.writeFile(values.trace, JSON.stringify(this.#recorder.toJSON()));
      if (!json) io.err(`trace written to ${values.trace} (open it at https://ui.perfetto.dev)\n`);
    }
    return ok ? EXIT_OK : EXIT_CHECK_FAILED;
  }
}

function listCommand(inv: Invocation): number {
  inv.expectArgs(0, "no argument");
  inv.noAxes();
  if (inv.json) inv.io.out(cliJson("list", { scenarios: BUILTIN_SCENARIOS }));
  else {
    const width = Math.max(...BUILTIN_SCENARIOS.map((s) => s.name.length));
    for (const s of BUILTIN_SCENARIOS) inv.io.out(`${s.name.padEnd(width)}  ${s.description}\n`);
  }
  return EXIT_OK;
}

function showCommand(inv: Invocation): number {
  inv.expectArgs(1, "one built-in scenario name");
  inv.noAxes();
  const name = inv.rest[0] ?? "";
  const s = builtinScenario(name);
  if (s === undefined) throw new ScenarioError("<name>", name, `a built-in scenario (${BUILTIN_SCENARIOS.map((b) => b.name).join(", ")})`);
  // $schema first, so an editor completes and checks the file the user makes of it.
  inv.io.out(`${JSON.stringify({ $schema: inv.io.schemaUrl, ...s }, null, 2)}\n`);
  return EXIT_OK;
}

function demoCommand(inv: Invocation): number | Promise<number> {
  inv.expectArgs(0, "no argument");
  inv.noAxes();
  if (inv.values.record !== undefined) throw new UsageError("--record takes run or compare (one scenario per log)");
  const show = (sections: readonly DemoSection[]): number => {
    inv.io.out(inv.json ? cliJson("demo", { sections }) : `${renderDemo(sections)}\n`);
    return inv.finish(sections.every((s) => s.ok));
  };
  const parallel = inv.parallel();
  if (parallel === undefined) return show(runDemo(inv.hosts()));
  const lists = BUILTIN_SCENARIOS.map((s) => configurations(s, defaultAxes(s)));
  return runConfigurations(lists.flat(), parallel.jobs, parallel.worker).then((results) => {
    let at = 0;
    return show(
      BUILTIN_SCENARIOS.map((s, i) => {
        const n = lists[i]?.length ?? 0;
        at += n;
        return demoSection(s, results.slice(at - n, at));
      }),
    );
  });
}

function runCommand(inv: Invocation): number {
  inv.expectArgs(1, "one scenario (a file or a built-in name)");
  const s = loadScenario(inv.rest[0] ?? "");
  const axes = parseAxes(inv.values.api, inv.values.iommu, { api: [s.api ?? "two-step"], iommu: [s.kernel?.iommuMode ?? "strict"] });
  const api = axes.api[0];
  const iommu = axes.iommu[0];
  if (axes.api.length !== 1 || axes.iommu.length !== 1 || api === undefined || iommu === undefined) throw new UsageError("run takes one --api and one --iommu value; use compare for a sweep");
  const profile = inv.profile();
  const r = runScenario(s, { api, iommu, ...profile, ...inv.hosts(s) });
  inv.io.out(inv.json ? cliJson("run", { scenario: s, result: r }) : `${renderRun(s, r, profile.costProfile ?? s.kernel?.costProfile)}\n`);
  return inv.finish(r.ok, [r]);
}

function compareCommand(inv: Invocation): number | Promise<number> {
  inv.expectArgs(1, "one scenario (a file or a built-in name)");
  const { io, json } = inv;
  const s = loadScenario(inv.rest[0] ?? "");
  const axes = parseAxes(inv.values.api, inv.values.iommu, defaultAxes(s));
  const bar = io.stderrIsTTY && !json;
  const profile = inv.profile();
  const onProgress = bar ? (done: number, total: number, label: string) => { io.err(progressBar(done, total, label)); } : undefined;
  const show = (results: RunResult[]): number => {
    if (bar) io.err("\r\x1b[2K");
    io.out(json ? cliJson("compare", { scenario: s, axes, results }) : `${renderScenario(s, results)}\n\n${readingNote(profile.costProfile ?? s.kernel?.costProfile)}\n`);
    return inv.finish(results.every((r) => r.ok), results);
  };
  const parallel = inv.parallel();
  if (parallel === undefined) return show(sweep(s, axes, { ...profile, ...inv.hosts(s), ...(onProgress === undefined ? {} : { onProgress }) }));
  const list = configurations(s, axes, profile.costProfile);
  // Workers finish out of order: the bar counts finished runs and names the latest.
  onProgress?.(0, list.length, s.name);
  return runConfigurations(list, parallel.jobs, parallel.worker, onProgress).then(show);
}

function calibrateCommand(inv: Invocation): number {
  inv.expectArgs(0, "no argument");
  inv.noAxes();
  if (inv.values.record !== undefined || inv.values.trace !== undefined) throw new UsageError("calibrate takes no --record or --trace (it prices runs, it records none)");
  const names = inv.values.profile?.split(",") ?? [...CALIBRATION_PROFILES];
  for (const n of names) if (!isCostProfileName(n)) throw new OptionError("--profile", n, `a comma-separated list of cost profiles: ${COST_PROFILE_NAMES.join(", ")}`);
  const profiles = names.filter(isCostProfileName);
  let expectations;
  try {
    expectations = (inv.values.expect ?? []).map((e) => parseExpectation(e, caseNames()));
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  const counters = measureCases();
  const report = priceCalibration(counters, profiles);
  const published = checkExpectations(report, publishedExpectations());
  const expected = checkExpectations(report, expectations);
  const factors = [0.25, 4];
  const sweep = inv.values.sweep === true ? sweepAssumed(counters, factors) : undefined;
  if (inv.json) {
    const conclusions = sweep?.map((o) => ({ id: o.conclusion.id, text: o.conclusion.text, holdsAtBase: o.holdsAtBase, flips: o.flips }));
    inv.io.out(cliJson("calibrate", { ...report, published, expected, ...(conclusions === undefined ? {} : { factors, conclusions }) }));
  } else {
    inv.io.out(`${renderCalibration(report, published, expected)}\n${sweep === undefined ? "" : `\n${renderSweep(sweep, factors)}\n`}`);
  }
  return EXIT_OK;
}

/**
 * explore: records the scenario over its axes (--api/--iommu narrow them), then writes the explorer site
 * with that scenario and run log to --out, or serves it on 127.0.0.1 (--port, default a free one) until
 * SIGINT. Serving needs the asynchronous entry (the binary, or mainParallel).
 */
function exploreCommand(inv: Invocation): number | Promise<number> {
  inv.expectArgs(1, "one scenario (a file or a built-in name)");
  const { io, values, json } = inv;
  if (values.record !== undefined || values.trace !== undefined) throw new UsageError("explore takes no --record or --trace (the page gets the run log; run --record writes the same one)");
  if (values.out !== undefined && values.port !== undefined) throw new UsageError("explore takes --out (write a static site) or --port (serve it), not both");
  if (values.force !== undefined && values.out === undefined) throw new UsageError("--force goes with --out");
  const port = parsePort(values.port);
  const site = io.explorerSite === undefined ? installedExplorerSite() : checkedSite(io.explorerSite);
  const s = loadScenario(inv.rest[0] ?? "");
  const axes = parseAxes(values.api, values.iommu, defaultAxes(s));
  const log = recordForExplorer(s, axes);
  const script = scenarioScript(s, log);
  const runs = log.runs.map((r) => ({ label: r.label, events: r.events.length, droppedEvents: r.droppedEvents }));
  if (values.out !== undefined) {
    const files = writeExplorerSite(site, values.out, script, values.force === true);
    io.out(json ? cliJson("explore", { scenario: s.name, out: values.out, files, runs }) : `explorer page for ${s.name} written to ${values.out}: open ${join(values.out, "index.html")} in a browser
`);
    return EXIT_OK;
  }
  if (inv.worker === undefined) throw new UsageError("explore without --out serves the page until interrupted: run the dmasim binary, or pass --out <dir>");
  return startExploreServer(site, script, port).then(async (server) => {
    io.out(json ? cliJson("explore", { scenario: s.name, url: server.url, runs }) : `dmasim explore: ${s.name} at ${server.url} (Ctrl-C stops)
`);
    await (io.untilStopped ?? untilSigint)(server);
    await server.close();
    return EXIT_OK;
  });
}

/** Resolves on the first SIGINT (Ctrl-C), which then no longer ends the process by default. */
function untilSigint(): Promise<void> {
  return new Promise((done) => {
    process.once("SIGINT", () => {
      done();
    });
  });
}

/** --port: 0 (a free port, the default) or 1..65535. */
function parsePort(text: string | undefined): number {
  if (text === undefined) return 0;
  const n = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 0 && n <= 65535)) throw new OptionError("--port", text, "a TCP port from 1 to 65535 (0: a free one)");
  return n;
}

const COMMANDS: Readonly<Record<string, (inv: Invocation) => number | Promise<number>>> = {
  calibrate: calibrateCommand,
  explore: exploreCommand,
  list: listCommand,
  show: showCommand,
  demo: demoCommand,
  run: runCommand,
  compare: compareCommand,
};

function dispatch(argv: readonly string[], io: Io, worker: WorkerOptions | undefined): number | Promise<number> {
  const { values, positionals } = parseCommandLine(argv);
  const [command, ...rest] = positionals;
  if (values.help === true || command === "help") {
    io.out(HELP);
    return EXIT_OK;
  }
  if (values.version === true) {
    io.out(`${cliVersion()}\n`);
    return EXIT_OK;
  }
  if (command === undefined) {
    io.err(HELP);
    return EXIT_USAGE;
  }
  // Output files are checked before anything runs: a long sweep must not end in a write that fails.
  for (const [option, path] of [["--trace", values.trace], ["--record", values.record]] as const) {
    const problem = path === undefined ? undefined : io.outputProblem(path);
    if (problem !== undefined) throw new OptionError(option, path, problem);
  }
  if ((values.out !== undefined || values.port !== undefined || values.force !== undefined) && command !== "explore") throw new UsageError(`${command} takes no --out, --port or --force (explore does)`);
  const run = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (run === undefined) throw new UsageError(`unknown command ${JSON.stringify(command)}: expected demo, run, compare, explore, calibrate, list or show`);
  if ((values.jobs !== undefined || values["isolate-workers"] !== undefined) && command !== "demo" && command !== "compare") throw new UsageError(`${command} takes no --jobs or --isolate-workers (demo and compare do)`);
  parseJobs(values.jobs);
  return run(new Invocation(io, command, rest, values, worker));
}

/** --jobs: how many worker threads demo and compare use; 1 runs them in-process, one after the other. */
function parseJobs(text: string | undefined): number {
  if (text === undefined) return defaultJobs();
  const n = /^[1-9][0-9]{0,3}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= MAX_JOBS)) throw new OptionError("--jobs", text, `a number of worker threads from 1 to ${MAX_JOBS}`);
  return n;
}

const MAX_JOBS = 256;

/** One line redrawn in place: [#####.....] 3/8 label. */
export function progressBar(done: number, total: number, label: string): string {
  const width = 24;
  const filled = total === 0 ? width : Math.round((done / total) * width);
  return `\r\x1b[2K[${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total} ${label}`;
}
