import { statSync } from "node:fs";
import type { Stats } from "node:fs";
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import { pathToFileURL } from "node:url";

/** The file URL of the installed @dmasim/scenario's scenario.schema.json (what `dmasim show` puts in `$schema`). */
export function installedSchemaUrl(): string {
  return pathToFileURL(createRequire(import.meta.url).resolve("@dmasim/scenario/scenario.schema.json")).href;
}

/**
 * Why `path` cannot take an output file, or undefined when it can: checked before a command runs, so a
 * long sweep never ends in a write that fails.
 */
export function outputProblem(path: string): string | undefined {
  if (path === "") return "a file name";
  const st = statOrUndefined(path);
  if (st?.isDirectory() === true) return "a file name, not a directory";
  const dir = statOrUndefined(dirname(resolve(path)));
  if (dir === undefined) return `a file in an existing directory (${dirname(path)} does not exist)`;
  if (!dir.isDirectory()) return `a file in a directory (${dirname(path)} is not one)`;
  return undefined;
}

/** Why `path` cannot be read as a scenario file, or undefined when it can; `missing` when nothing is there. */
export function inputProblem(path: string): string | undefined {
  const st = statOrUndefined(path);
  if (st === undefined) return "missing";
  if (st.isDirectory()) return "a scenario file, not a directory";
  if (!st.isFile()) return "a regular scenario file";
  return undefined;
}

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

/**
 * Ends the process quietly when the reader of stdout goes away (`dmasim list | head -1`): EPIPE is the
 * reader's choice, not an error worth a stack trace. Other stream errors are reported on one line.
 */
export function quietOnEpipe(stream: { on(event: "error", fn: (e: Error & { code?: string }) => void): unknown }, exit: (code: number) => void, report: (text: string) => void): void {
  stream.on("error", (e) => {
    if (e.code === "EPIPE") exit(0);
    else {
      report(`dmasim: cannot write output: ${e.message}\n`);
      exit(2);
    }
  });
}
