import { existsSync, readFileSync } from "node:fs";
import { BUILTIN_SCENARIOS, builtinScenario, parseScenario, ScenarioError } from "@dmasim/scenario";
import type { Scenario } from "@dmasim/scenario";

/** A scenario from a file, or a built-in by name when no such file exists. */
export function loadScenario(arg: string): Scenario {
  if (!existsSync(arg)) {
    const builtin = builtinScenario(arg);
    if (builtin !== undefined) return builtin;
    throw new ScenarioError("<scenario>", arg, `a scenario file or a built-in name (${BUILTIN_SCENARIOS.map((s) => s.name).join(", ")})`);
  }
  return parseScenario(readFileSync(arg, "utf8"), arg);
}
