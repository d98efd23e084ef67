#!/usr/bin/env node
// `pnpm release`: publish the versions that `changeset version` wrote (README "Releasing").
// Refuses a dirty work tree or pending changesets (the version step was not run or not committed),
// then builds, runs every check (`pnpm test`, which includes the publish/install round trip through a
// local registry) and runs `changeset publish`, which publishes each package whose version is not on
// the registry yet and tags it. Pushing the commit and the tags is left to the maintainer.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./workspace.mjs";

const env = { ...process.env, TURBO_TELEMETRY_DISABLED: "1", DO_NOT_TRACK: "1" };
const step = (what, cmd, args) => {
  console.error(`release: ${what}`);
  const status = spawnSync(cmd, args, { cwd: ROOT, stdio: "inherit", env }).status;
  if (status !== 0) {
    console.error(`release: ${what} failed; nothing was published`);
    process.exit(1);
  }
};
const refuse = (why) => {
  console.error(`release: ${why}; nothing was published`);
  process.exit(1);
};

const dirty = spawnSync("git", ["status", "--porcelain"], { cwd: ROOT, encoding: "utf8" }).stdout.trim();
if (dirty !== "") refuse("the work tree has uncommitted changes");
const pending = readdirSync(join(ROOT, ".changeset")).filter((f) => f.endsWith(".md") && f !== "README.md");
if (pending.length > 0) refuse(`${pending.length} pending changeset(s): run \`pnpm changeset version\`, review and commit first`);

step("build", "pnpm", ["exec", "turbo", "run", "build", "--output-logs=errors-only"]);
step("test", process.execPath, [join(ROOT, "scripts/test.mjs")]);
step("publish", "pnpm", ["exec", "changeset", "publish"]);
console.error("release: published; now `git push --follow-tags`");
