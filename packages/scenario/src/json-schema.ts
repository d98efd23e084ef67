import { z } from "zod";
import { ScenarioSchema } from "./schema.js";

/**
 * The JSON Schema of a scenario file (draft 2020-12), generated from the zod schema: what
 * scenario.schema.json holds (it ships in this package as `@dmasim/scenario/scenario.schema.json`) (`pnpm --filter @dmasim/scenario schema` writes it; a test checks it is
 * current). Relations between fields (refine.ts) and the platform spec's details are not in it.
 */
export function scenarioJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(ScenarioSchema, { io: "input", unrepresentable: "any" }),
    title: "dmasim scenario",
  };
}
