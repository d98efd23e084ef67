import { readFileSync } from "node:fs";
import { BUILTIN_SCENARIOS, builtinScenario, parseScenario, ScenarioError } from "@dmasim/scenario";
import type { Scenario } from "@dmasim/scenario";
import { inputProblem } from "./files.js";

/** A scenario from a file, or a built-in by name when no such file exists. */
export function loadScenario(arg: string): Scenario {
  const problem = inputProblem(arg);
  if (problem === "missing") {
    const builtin = builtinScenario(arg);
    if (builtin !== undefined) return builtin;
    throw new ScenarioError("<scenario>", arg, `a scenario file or a built-in name (${BUILTIN_SCENARIOS.map((s) => s.name).join(", ")})`);
  }
  if (problem !== undefined) throw new ScenarioError("<scenario>", arg, problem);
  let text: string;
  try {
    text = readFileSync(arg, "utf8");
  } catch (e) {
    throw new ScenarioError("<scenario>", arg, `a readable file (${e instanceof Error ? e.message : String(e)})`);
  }
  return parseScenario(text, arg);
}
