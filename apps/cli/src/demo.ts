import { READING_NOTE, renderScenario } from "./render.js";
import type { RunContext, RunResult, Scenario } from "@dmasim/scenario";
import { BUILTIN_SCENARIOS, defaultAxes, sweep } from "@dmasim/scenario";

/** One built-in scenario swept over its axes (classic vs two-step, strict vs lazy by default). */
export interface DemoSection {
  readonly scenario: string;
  readonly description: string;
  readonly ok: boolean;
  readonly results: readonly RunResult[];
}

export function runDemoScenario(s: Scenario, options: { onHost?: RunContext["onHost"] } = {}): DemoSection {
  return demoSection(s, sweep(s, defaultAxes(s), options));
}

/** A scenario's section of the demo from its runs (made in-process or on worker threads). */
export function demoSection(s: Scenario, results: readonly RunResult[]): DemoSection {
  return { scenario: s.name, description: s.description, ok: results.every((r) => r.ok), results };
}

/** Every built-in scenario: what `dmasim demo` (and `pnpm demo`) shows. */
export function runDemo(options: { onHost?: RunContext["onHost"] } = {}): DemoSection[] {
  return BUILTIN_SCENARIOS.map((s) => runDemoScenario(s, options));
}

export function renderDemo(sections: readonly DemoSection[]): string {
  const out = ["dmasim demo — the Linux DMA mapping stack, modelled: built-in scenarios, classic vs two-step API", ""];
  for (const sec of sections) {
    const s = BUILTIN_SCENARIOS.find((b) => b.name === sec.scenario);
    if (s !== undefined) out.push(renderScenario(s, sec.results), "");
  }
  const runs = sections.reduce((n, s) => n + s.results.length, 0);
  const failed = sections.filter((s) => !s.ok);
  out.push(
    failed.length === 0
      ? `All ${sections.length} scenarios (${runs} runs) passed every check.`
      : `${failed.length} of ${sections.length} scenarios FAILED a check: ${failed.map((s) => s.scenario).join(", ")}.`,
    READING_NOTE,
  );
  return out.join("\n");
}
