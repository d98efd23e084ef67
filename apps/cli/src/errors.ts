import { DmasimError, DmasimInputError } from "@dmasim/trace";
import { ScenarioError, ScenarioSetupError } from "@dmasim/scenario";
import { ExploreOutError, ExplorerSiteError } from "./explore.js";

/** A command line the command cannot run: an unknown command or option, a wrong number of arguments. */
export class UsageError extends DmasimError {
  override readonly name: string = "UsageError";
  constructor(message: string) {
    super("EINVAL", message);
  }
}

/** An option whose value cannot be used (an output file in a missing directory): names the option and the value. */
export class OptionError extends DmasimInputError {
  override readonly name: string = "OptionError";
  constructor(option: string, value: unknown, expected: string) {
    super("", option, value, expected);
  }
}

export const EXIT_OK = 0;
export const EXIT_CHECK_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_INTERNAL = 70;

/** What the command prints on stderr for an error, and the exit status it ends with. Plain data, so a worker thread can hand it back. */
export interface ErrorReport {
  readonly status: number;
  readonly text: string;
}

export function errorReport(e: unknown): ErrorReport {
  if (e instanceof ReportedError) return e.report;
  if (e instanceof UsageError || e instanceof OptionError || e instanceof ScenarioError || e instanceof ScenarioSetupError || e instanceof ExploreOutError || e instanceof ExplorerSiteError) {
    return { status: EXIT_USAGE, text: `dmasim: ${e.message}\n${e instanceof UsageError ? "Run dmasim --help for the commands and options.\n" : ""}` };
  }
  // A defect of dmasim itself: one line saying so, never a stack trace.
  const what = e instanceof Error ? `${e.name}: ${e.message.split("\n")[0] ?? ""}` : String(e);
  return { status: EXIT_INTERNAL, text: `dmasim: internal error (please report it): ${what}\n` };
}

/**
 * An error raised in a worker thread, already turned into its report there: the class of the original
 * does not survive the thread boundary, so the worker classifies it and this carries the verdict back.
 */
export class ReportedError extends DmasimError {
  override readonly name: string = "ReportedError";
  constructor(readonly report: ErrorReport) {
    super("EIO", report.text.trimEnd());
  }
}
