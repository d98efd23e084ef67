import { ScenarioError } from "./errors.js";
import type { Scenario } from "./types.js";
import { validateScenario } from "./validate.js";

/** Deeper nesting than any scenario needs; refused before parsing so no recursion can run out of stack. */
export const MAX_JSON_DEPTH = 64;

/** The deepest nesting of `[` and `{` outside strings, and where it first goes past `limit` (or -1). */
function depthOver(text: string, limit: number): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return i;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return -1;
}

/** 1-based line and column of character `pos`. */
function lineColumn(text: string, pos: number): string {
  const before = text.slice(0, Math.max(0, Math.min(pos, text.length)));
  const line = before.split("\n").length;
  return `${line}:${pos - before.lastIndexOf("\n")}`;
}

/**
 * Parses and validates the text of a scenario file; `origin` names it in messages. A JSON syntax error is
 * reported at `origin:line:column`, nesting deeper than MAX_JSON_DEPTH before anything is parsed.
 */
export function parseScenario(text: string, origin: string): Scenario {
  const deep = depthOver(text, MAX_JSON_DEPTH);
  if (deep >= 0) throw new ScenarioError(`${origin}:${lineColumn(text, deep)}`, text.slice(deep, deep + 20), `JSON nested at most ${MAX_JSON_DEPTH} levels deep`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const m = /position (\d+)/.exec(message);
    const pos = m === null ? text.length : Number(m[1]);
    throw new ScenarioError(`${origin}:${lineColumn(text, pos)}`, text.slice(pos, pos + 20), `valid JSON (${message.replace(/ in JSON at position \d+.*$/, "")})`);
  }
  return validateScenario(json, origin);
}
