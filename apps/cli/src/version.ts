import { createRequire } from "node:module";

/** The version of the installed dmasim command, from its package.json (src/ and dist/ both sit beside it). */
export function cliVersion(): string {
  const pkg = createRequire(import.meta.url)("../package.json") as { version?: unknown };
  return typeof pkg.version === "string" ? pkg.version : "unknown";
}
