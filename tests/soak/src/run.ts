import fc from "fast-check";
import { commandArbs, unmap, type SoakModel } from "./commands.js";
import { configArb, type SoakConfig } from "./config.js";
import { SoakSystem, SoakViolation } from "./system.js";

/** Commands per sequence, at most. */
export const MAX_COMMANDS = 30;

/** One sequence: a platform configuration and the commands run on it. */
export const sequenceArb = fc.tuple(configArb, fc.commands(commandArbs, { maxCommands: MAX_COMMANDS, size: "max" }));

export type Sequence = [SoakConfig, Iterable<fc.Command<SoakModel, SoakSystem>>];

/**
 * Runs one sequence, then the driver's teardown (unmap everything still live) and the end-of-run
 * checks. Returns the number of commands run; throws SoakViolation on a broken promise (any other
 * error is a model crash and counts as one too).
 */
export function runSequence([cfg, cmds]: Sequence, outcomes?: Map<string, number>): number {
  const sys = new SoakSystem(cfg);
  const model: SoakModel = { commands: 0 };
  fc.modelRun(() => ({ model, real: sys }), cmds);
  for (const m of [...sys.live]) unmap(sys, m);
  sys.checkAll();
  sys.checkTeardown();
  if (outcomes !== undefined) {
    for (const [k, v] of sys.outcomes) outcomes.set(k, (outcomes.get(k) ?? 0) + v);
    for (const [k, v] of Object.entries(sys.kernel.faultInjection.injected())) outcomes.set(`${k} injected`, (outcomes.get(`${k} injected`) ?? 0) + v);
  }
  return model.commands;
}

export interface SoakFailure {
  readonly sequence: number;
  readonly config: string;
  readonly commands: string;
  readonly error: string;
}

export interface SoakResult {
  readonly sequences: number;
  readonly commands: number;
  readonly violations: number;
  /** How the mapping calls ended and how many failures were injected, over all sequences that passed. */
  readonly outcomes: Readonly<Record<string, number>>;
  /** The first few failures, with what it takes to reproduce them. */
  readonly failures: readonly SoakFailure[];
}

/** `n` sequences drawn from `seed`: every one runs, whatever the others did. */
export function soak(n: number, seed: number): SoakResult {
  let commands = 0;
  let violations = 0;
  const failures: SoakFailure[] = [];
  const outcomes = new Map<string, number>();
  const sequences = fc.sample(sequenceArb, { seed, numRuns: n });
  for (const [i, seq] of sequences.entries()) {
    try {
      commands += runSequence(seq, outcomes);
    } catch (e) {
      violations++;
      if (failures.length < 5) {
        const error = e instanceof SoakViolation ? e.message : e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ""}` : String(e);
        failures.push({ sequence: i, config: JSON.stringify(seq[0]), commands: [...seq[1]].map((c) => c.toString()).join(", "), error });
      }
    }
  }
  return { sequences: sequences.length, commands, violations, outcomes: Object.fromEntries([...outcomes].sort()), failures };
}

/** The summary line `pnpm soak` prints. */
export function summary(r: SoakResult): string {
  return `${r.sequences} sequences, ${r.commands} commands, ${r.violations} violations`;
}
