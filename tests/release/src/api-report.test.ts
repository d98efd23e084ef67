// The checked-in API reports (<package>/api/*.api.md) match the built declarations, so a change to a
// public signature cannot land without a change to a report that a reviewer sees.
import { join } from "node:path";
import { beforeAll, expect, it } from "vitest";
import { run, said } from "./run.js";
import { ROOT } from "./workspace.js";

beforeAll(async () => {
  // A no-op after `pnpm test`'s build (turbo's cache); builds what is missing when run alone.
  const r = await run("pnpm", ["exec", "turbo", "run", "build", "--output-logs=errors-only"], ROOT, { ...process.env, TURBO_TELEMETRY_DISABLED: "1", DO_NOT_TRACK: "1" });
  expect(r.status, said(r)).toBe(0);
}, 600_000);

it("every published entry's API report matches the build (pnpm api:update rewrites them)", async () => {
  const r = await run(process.execPath, [join(ROOT, "scripts/api-report.mjs")], ROOT);
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
});
