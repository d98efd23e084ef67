import { describe, expect, it } from "vitest";
import { DmasimInputError } from "./errors.js";
import { DmasimInputIssuesError, formatPath, joinPath, schemaIssues } from "./input-issues.js";

describe("schema issues", () => {
  it("formats paths from the root", () => {
    expect(formatPath(["endpoints", 2, "bars", 0, "size"])).toBe("endpoints[2].bars[0].size");
    expect(formatPath([])).toBe("");
    expect(formatPath(["devices", "0000:01:00.0", "coherent"])).toBe('devices["0000:01:00.0"].coherent');
    expect(joinPath("spec", "")).toBe("spec");
    expect(joinPath("options", "devices.x")).toBe("options.devices.x");
  });

  it("gives one issue per unknown key, with the value found there", () => {
    const input = { a: { b: 1, c: 2 } };
    expect(schemaIssues([{ code: "unrecognized_keys", path: ["a"], keys: ["b", "c"], message: "no such field" }], input)).toEqual([
      { path: "a.b", value: 1, expected: "no such field" },
      { path: "a.c", value: 2, expected: "no such field" },
    ]);
  });

  it("reports the union branch that got furthest, or the union's message when none got past its root", () => {
    const input = { u: [{ x: "s" }], v: true };
    const deep = { code: "invalid_union", path: ["u"], message: "an object or a list", errors: [[{ code: "invalid_type", path: [], message: "an object" }], [{ code: "invalid_type", path: [0, "x"], message: "a number" }]] };
    const flat = { code: "invalid_union", path: ["v"], message: "a count or a list", errors: [[{ code: "invalid_type", path: [], message: "a count" }], [{ code: "invalid_type", path: [], message: "a list" }]] };
    expect(schemaIssues([deep, flat], input)).toEqual([
      { path: "u[0].x", value: "s", expected: "a number" },
      { path: "v", value: true, expected: "a count or a list" },
    ]);
  });

  it("an issues error is an input error on its first issue, listing the others on their own lines", () => {
    const e = new DmasimInputIssuesError("createThing", "options", [
      { path: "size", value: -1, expected: "bytes > 0" },
      { path: "mode", value: "x", expected: '"a" or "b"' },
    ]);
    expect(e).toBeInstanceOf(DmasimInputError);
    expect([e.code, e.argument, e.value]).toEqual(["EINVAL", "options.size", -1]);
    expect(e.issues).toHaveLength(2);
    expect(e.message).toBe('createThing: options.size = -1 is invalid: expected bytes > 0\n  and options.mode = "x" is invalid: expected "a" or "b"');
  });
});
