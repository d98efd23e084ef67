import { DmasimError, DmasimInputError, DmasimStateError, showValue } from "@dmasim/trace";

/** One problem of a scenario: the field's path from the root, the value found (undefined: missing), what was expected. */
export interface ScenarioIssue {
  /** Path of the field, e.g. `workload.ops`. */
  readonly path: string;
  /** The value found there. */
  readonly value: unknown;
  /** What the field should hold. */
  readonly expected: string;
}

function line(i: ScenarioIssue): string {
  return `${i.path} = ${i.value === undefined ? "(missing)" : showValue(i.value)} is invalid: expected ${i.expected}`;
}

/**
 * A scenario that cannot run as written. `code` is `EINVAL`; `argument`/`value`/`expected` describe the
 * first problem and `issues` lists every one, each with its path from the root (`scenario.workload.ops`,
 * `bad.json:3:7` for a JSON syntax error). The message has one line per issue.
 */
export class ScenarioError extends DmasimInputError {
  override readonly name: string = "ScenarioError";
  /** Every problem found, the first one first (the error's own argument and value). */
  readonly issues: readonly ScenarioIssue[];

  constructor(field: string, value: unknown, expected: string, more: readonly ScenarioIssue[] = []) {
    super("", field, value, expected);
    this.issues = [{ path: field, value, expected }, ...more];
    this.message = this.issues.length === 1 ? line({ path: field, value, expected }) : `${this.issues.length} problems:\n${this.issues.map((i) => `  ${line(i)}`).join("\n")}`;
  }

  /** One error for all of `issues` (at least one). */
  static of(issues: readonly ScenarioIssue[]): ScenarioError {
    const [first, ...more] = issues;
    if (first === undefined) return new ScenarioError("scenario", undefined, "a scenario (no issue was given)");
    return new ScenarioError(first.path, first.value, first.expected, more);
  }

  /** The path of the (first) field from the root. */
  get field(): string {
    return this.argument;
  }
}

/** Wraps an error the model raised while building the scenario's platform or kernel; keeps its `code`. */
export class ScenarioSetupError extends DmasimStateError {
  override readonly name: string = "ScenarioSetupError";

  constructor(what: string, cause: Error) {
    super(cause instanceof DmasimError ? cause.code : "EINVAL", `${what}: ${cause.message}`);
    this.cause = cause;
  }
}
