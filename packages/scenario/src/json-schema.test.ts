import { readFileSync, writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { BUILTIN_SCENARIOS } from "./builtins.js";
import { scenarioJsonSchema } from "./json-schema.js";

const file = new URL("../scenario.schema.json", import.meta.url);
const text = `${JSON.stringify(scenarioJsonSchema(), null, 2)}\n`;

describe("scenario.schema.json", () => {
  it("is the JSON Schema generated from the zod schema (run `pnpm --filter @dmasim/scenario schema` after a change)", () => {
    if (process.env.UPDATE_SCENARIO_SCHEMA === "1") writeFileSync(file, text);
    expect(readFileSync(file, "utf8")).toBe(text);
  });

  it("describes the fields editors complete: the workload kinds, unknown keys refused", () => {
    const schema = JSON.parse(text) as { additionalProperties: boolean; required: string[]; properties: { workload: { oneOf: { properties: { kind: { const: string } } }[] } } };
    expect(schema.additionalProperties).toBe(false);
    expect(schema.required).toEqual(["name", "description", "platform", "workload"]);
    expect(schema.properties.workload.oneOf.map((o) => o.properties.kind.const)).toEqual(["nvme", "sg", "single", "p2p", "stale-window", "hmm", "rdma-odp", "dmabuf"]);
    expect(BUILTIN_SCENARIOS.length).toBeGreaterThan(0);
  });
});
