import { ScenarioError } from "./errors.js";
import type { Scenario } from "./types.js";
import { validateScenario } from "./validate.js";

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
