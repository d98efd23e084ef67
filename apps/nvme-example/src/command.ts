import { parseArgs } from "node:util";
import type { ParseArgsConfig } from "node:util";
import { DmasimError, DmasimInputError } from "@dmasim/trace";

// What the two commands share: strict option parsing (an unknown option or a stray argument is refused),
// value checks that name the option, and one place that turns any refusal into one line on stderr.

/** Where a command writes; the scripts pass the process's streams, tests their own. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
}

/** A command line that cannot be run as written (exit status 2). */
export class UsageError extends DmasimError {
  override readonly name: string = "UsageError";
  constructor(message: string) {
    super("EINVAL", message);
  }
}

/**
 * node:util parseArgs with `strict`: unknown options, a missing value and positional arguments are
 * usage errors. Only the first sentence of Node's message is kept (the rest is advice about `--`).
 */
interface StrictConfig<O> {
  args: string[];
  options: O;
  strict: true;
  allowPositionals: false;
}
export function parseOptions<O extends NonNullable<ParseArgsConfig["options"]>>(argv: readonly string[], options: O): ReturnType<typeof parseArgs<StrictConfig<O>>>["values"] {
  // `pnpm run <script> -- --ops 5` hands the script its `--` separator too: a leading one is dropped.
  const args = argv[0] === "--" ? argv.slice(1) : [...argv];
  try {
    return parseArgs<StrictConfig<O>>({ args, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    throw new UsageError(message.split(/\.(?:\s|$)/)[0] ?? message);
  }
}

function invalid(option: string, value: string, expected: string): UsageError {
  return new UsageError(`--${option} ${JSON.stringify(value)} is invalid: expected ${expected}`);
}

/** An integer option in [min, max]; `fallback` when the option is absent. */
export function intOption(option: string, value: string | undefined, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  const n = /^-?\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw invalid(option, value, max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`);
  }
  return n;
}

/** A finite number option >= min. */
export function numberOption(option: string, value: string | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const n = value.trim() === "" ? NaN : Number(value);
  if (!Number.isFinite(n) || n < min) throw invalid(option, value, `a number >= ${min}`);
  return n;
}

/** An option that takes one of a fixed set of words. */
export function choiceOption<T extends string>(option: string, value: string | undefined, fallback: T, choices: readonly T[], isChoice: (v: string) => v is T = (v): v is T => (choices as readonly string[]).includes(v)): T {
  if (value === undefined) return fallback;
  if (!isChoice(value)) throw invalid(option, value, choices.join(", "));
  return value;
}

/**
 * Runs a command's body and returns its exit status: 0, or 2 for a usage error or an input the model
 * refuses (a DmasimInputError names the argument), 1 for any other failure. Every failure is one line on
 * stderr, `<command>: <message>`, never a stack trace.
 */
export function runCommand(command: string, io: Io, body: () => void): number {
  try {
    body();
    return 0;
  } catch (e) {
    const message = (e instanceof Error ? e.message : String(e)).split("\n")[0] ?? "";
    if (e instanceof UsageError) {
      io.err(`${command}: ${message} (${command} --help lists the options)\n`);
      return 2;
    }
    io.err(`${command}: ${message}\n`);
    return e instanceof DmasimInputError ? 2 : 1;
  }
}

/**
 * The process's streams as an Io. A reader that goes away early (`| head`) closes the pipe: the command
 * then stops quietly, as a Unix filter does, instead of dying on an unhandled EPIPE with a stack trace.
 */
export function processIo(): Io {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code !== "EPIPE") throw e;
      process.exit(process.exitCode ?? 0);
    });
  }
  return { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) };
}
