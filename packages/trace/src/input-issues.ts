import { DmasimInputError, showValue } from "./errors.js";

/**
 * Issues of a structured input (a platform spec, an options object), as schema validation reports them:
 * every problem, each with its path from the root. Kept free of any schema library's types: a schema
 * issue is read structurally (zod's issue objects have this shape), so the lowest package needs no
 * dependency and the per-call checks of the model never load one.
 */

/** One problem of a structured input: where (path from the root), the value found there, what was expected. */
export interface InputIssue {
  /** `endpoints[0].bars[1].size`; `""` for the root. */
  readonly path: string;
  /** The value found at `path` (undefined when the path does not exist in the input). */
  readonly value: unknown;
  /** What a valid value there looks like, in words. */
  readonly expected: string;
}

/** The part of a schema library's issue this module reads (zod 4's `$ZodIssue` matches it). */
export interface SchemaIssueLike {
  /** The kind of issue (`invalid_type`, `unrecognized_keys`, `invalid_union`, …). */
  readonly code: string;
  /** Keys from the root of the input to the offending value. */
  readonly path: readonly PropertyKey[];
  /** The schema's wording of the problem; becomes the issue's `expected`. */
  readonly message: string;
  /** Unknown keys of an object (`unrecognized_keys`). */
  readonly keys?: readonly string[];
  /** The issues of each branch of a union (`invalid_union`), with paths relative to the union. */
  readonly errors?: readonly (readonly SchemaIssueLike[])[];
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/** `a.b[2].c` from `["a", "b", 2, "c"]`; a key that is not an identifier is quoted: `devices["0000:01:00.0"]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const k of path) {
    if (typeof k === "number") out += `[${k}]`;
    else if (typeof k === "string" && !IDENTIFIER.test(k)) out += `[${JSON.stringify(k)}]`;
    else out += out === "" ? String(k) : `.${String(k)}`;
  }
  return out;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v = root;
  for (const k of path) {
    if (typeof v !== "object" || v === null) return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

function depth(issues: readonly SchemaIssueLike[]): number {
  let d = 0;
  for (const i of issues) d = Math.max(d, i.path.length + (i.errors === undefined ? 0 : 1));
  return d;
}

/**
 * Flattens schema issues into one `InputIssue` per problem: an unknown key becomes an issue at the key's
 * path; a union none of whose branches fits reports the branch that got furthest into the value (the
 * one the author evidently meant), or the union's own message when every branch failed at its root.
 */
export function schemaIssues(issues: readonly SchemaIssueLike[], root: unknown, base: readonly PropertyKey[] = []): InputIssue[] {
  const out: InputIssue[] = [];
  for (const issue of issues) {
    const path = [...base, ...issue.path];
    if (issue.code === "unrecognized_keys" && issue.keys !== undefined) {
      for (const k of issue.keys) out.push({ path: formatPath([...path, k]), value: valueAt(root, [...path, k]), expected: issue.message });
      continue;
    }
    if (issue.code === "invalid_union" && issue.errors !== undefined && issue.errors.length > 0) {
      let best: readonly SchemaIssueLike[] = [];
      for (const branch of issue.errors) if (depth(branch) > depth(best)) best = branch;
      if (best.length > 0) {
        out.push(...schemaIssues(best, root, path));
        continue;
      }
    }
    out.push({ path: formatPath(path), value: valueAt(root, path), expected: issue.message });
  }
  return out;
}

/** `root.path`, `root[0].x` or `root` alone for the root itself. */
export function joinPath(root: string, path: string): string {
  if (path === "") return root;
  if (root === "" || path.startsWith("[")) return `${root}${path}`;
  return `${root}.${path}`;
}

/**
 * Bad structured input with every issue found. The `DmasimInputError` fields describe the first issue
 * (`argument` is its path from `root`); `issues` lists them all, and the message has one line per issue.
 */
export class DmasimInputIssuesError extends DmasimInputError {
  override readonly name: string = "DmasimInputIssuesError";
  /** Every issue found, in the schema's order; never empty (the fields of `DmasimInputError` repeat the first). */
  readonly issues: readonly InputIssue[];
  constructor(fn: string, root: string, issues: readonly InputIssue[]) {
    const first = issues[0] ?? { path: "", value: undefined, expected: "a valid input" };
    super(fn, joinPath(root, first.path), first.value, first.expected);
    this.issues = issues.length === 0 ? [first] : issues;
    if (issues.length > 1) {
      const rest = issues.slice(1).map((i) => `\n  and ${joinPath(root, i.path)} = ${showValue(i.value)} is invalid: expected ${i.expected}`);
      this.message += rest.join("");
    }
  }
}
