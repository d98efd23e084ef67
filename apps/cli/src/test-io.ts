// One recording Io for the command's tests: what a command prints, on which stream, and the files it writes.
import type { Io } from "./cli.js";
import { outputProblem } from "./files.js";

export interface RecordingIo {
  readonly io: Io;
  out(): string;
  err(): string;
  readonly files: Map<string, string>;
}

export function recordingIo(options: { tty?: boolean; onWrite?: () => void } = {}): RecordingIo {
  let out = "";
  let err = "";
  const files = new Map<string, string>();
  const io: Io = {
    out: (t) => {
      out += t;
    },
    err: (t) => {
      err += t;
    },
    stderrIsTTY: options.tty ?? false,
    writeFile: (p, d) => {
      options.onWrite?.();
      files.set(p, d);
    },
    outputProblem,
    schemaUrl: "file:///scenario.schema.json",
  };
  return { io, out: () => out, err: () => err, files };
}
