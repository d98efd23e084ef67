import { describe, expect, it } from "vitest";
import { patternBytes } from "./pattern.js";

describe("patternBytes", () => {
  it("is deterministic: the same seed gives the same bytes", () => {
    expect(patternBytes(4096, 7)).toEqual(patternBytes(4096, 7));
  });

  it("different seeds (even consecutive ones) give different streams", () => {
    const a = patternBytes(64, 1);
    const b = patternBytes(64, 2);
    expect(a).not.toEqual(b);
    expect(a.subarray(0, 8)).not.toEqual(b.subarray(0, 8));
  });

  it("looks like data, not a constant fill", () => {
    const bytes = patternBytes(4096, 3);
    expect(new Set(bytes).size).toBeGreaterThan(200);
    expect(patternBytes(0, 3)).toHaveLength(0);
  });
});
