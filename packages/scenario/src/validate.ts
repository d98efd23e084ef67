import type { z } from "zod";
import { ScenarioError } from "./errors.js";
import type { ScenarioIssue } from "./errors.js";
import { crossFieldIssues, platformIssues } from "./refine.js";
import { ScenarioSchema } from "./schema.js";
import type { Scenario } from "./types.js";

/** `a.b[2]["0000:01:00.0"]`: a path as a reader of the file writes it. */
export function pathText(root: string, path: readonly PropertyKey[]): string {
  let out = root;
  for (const k of path) {
    if (typeof k === "number") out += `[${k}]`;
    else if (typeof k === "string" && /^[A-Za-z_$][\w$]*$/.test(k)) out += `.${k}`;
    else out += `[${JSON.stringify(String(k))}]`;
  }
  return out;
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let v = input;
  for (const k of path) {
    if (typeof v !== "object" || v === null) return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

/** zod's issues as scenario issues: one per unknown key, the discriminator's path for a bad workload kind. */
function fromZod(input: unknown, root: string, error: z.ZodError): ScenarioIssue[] {
  const out: ScenarioIssue[] = [];
  for (const iss of error.issues) {
    if (iss.code === "unrecognized_keys") {
      for (const key of iss.keys) out.push({ path: pathText(root, [...iss.path, key]), value: valueAt(input, [...iss.path, key]), expected: iss.message });
    } else if (iss.code === "invalid_union" && iss.discriminator !== undefined && typeof valueAt(input, iss.path) === "object") {
      const path = [...iss.path, iss.discriminator];
      out.push({ path: pathText(root, path), value: valueAt(input, path), expected: iss.message });
    } else {
      out.push({ path: pathText(root, iss.path), value: valueAt(input, iss.path), expected: iss.message });
    }
  }
  return out;
}

/**
 * Checks a parsed scenario file against the schema and returns it typed; a bad one throws one
 * ScenarioError listing every issue with its path from `path` (the file's name, or "scenario"). The
 * platform part is checked by @dmasim/pcie-p2p's validator; relations between fields after that.
 */
export function validateScenario(input: unknown, path = "scenario"): Scenario {
  const issues: ScenarioIssue[] = [];
  const parsed = ScenarioSchema.safeParse(input);
  if (!parsed.success) issues.push(...fromZod(input, path, parsed.error));
  const platform = valueAt(input, ["platform"]);
  const bdfs = typeof platform === "object" && platform !== null && !Array.isArray(platform) ? platformIssues(platform, `${path}.platform`, issues) : undefined;
  if (parsed.success) crossFieldIssues(parsed.data, path, bdfs, issues);
  if (issues.length > 0) throw ScenarioError.of(issues);
  if (!parsed.success) throw new ScenarioError(path, input, "a scenario");
  return parsed.data;
}
