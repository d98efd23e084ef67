// The `--json` output of every command, versioned so programs (a user's CI) can rely on it: one object
// with `format: "dmasim-cli"`, the schema `version` and the `command`, then the command's fields.
// Within a version, fields are only ever added; renaming, removing or retyping one bumps the version
// (README "Output as JSON" documents version 1).

export const CLI_JSON_FORMAT = "dmasim-cli";
export const CLI_JSON_VERSION = 1;

export type CliCommand = "demo" | "run" | "compare" | "calibrate" | "list" | "explore";

/** The JSON text of a command's output: the envelope first, then `fields`, two-space indented, one trailing newline. */
export function cliJson(command: CliCommand, fields: Readonly<Record<string, unknown>>): string {
  return `${JSON.stringify({ format: CLI_JSON_FORMAT, version: CLI_JSON_VERSION, command, ...fields }, null, 2)}\n`;
}
