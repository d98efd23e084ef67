/** A scenario that cannot run as written: names the field, the value found and what was expected. */
export class ScenarioError extends Error {
  override readonly name = "ScenarioError";
  readonly code = "EINVAL";

  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly expected: string,
  ) {
    super(`${field} = ${show(value)} is invalid: expected ${expected}`);
  }
}

/** Wraps an error the model raised while building the scenario's platform or kernel. */
export class ScenarioSetupError extends Error {
  override readonly name = "ScenarioSetupError";
  readonly code = "EINVAL";

  constructor(what: string, cause: Error) {
    super(`${what}: ${cause.message}`, { cause });
  }
}

export function show(value: unknown): string {
  if (value === undefined) return "(missing)";
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
