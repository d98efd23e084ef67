import { existsSync, readFileSync } from "node:fs";
import { BUILTIN_SCENARIOS, builtinScenario } from "./scenario/builtins.js";
import { ScenarioError } from "./scenario/errors.js";
import type { Scenario } from "./scenario/types.js";
import { validateScenario } from "./scenario/validate.js";

/** A scenario from a file, or a built-in by name when no such file exists. */
export function loadScenario(arg: string): Scenario {
  if (!existsSync(arg)) {
    const builtin = builtinScenario(arg);
    if (builtin !== undefined) return builtin;
    throw new ScenarioError("<scenario>", arg, `a scenario file or a built-in name (${BUILTIN_SCENARIOS.map((s) => s.name).join(", ")})`);
  }
  return parseScenario(readFileSync(arg, "utf8"), arg);
}

/** Parses and validates the text of a scenario file; `origin` names it in messages. */
export function parseScenario(text: string, origin: string): Scenario {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ScenarioError(origin, `${text.slice(0, 20)}…`, `valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  return validateScenario(json, origin);
}
