#!/usr/bin/env node
import { mainParallel } from "./cli.js";
import { quietOnEpipe } from "./files.js";

const exit = (code: number): void => {
  process.exit(code);
};
quietOnEpipe(process.stdout, exit, (t) => process.stderr.write(t));
quietOnEpipe(process.stderr, exit, () => undefined);
process.exitCode = await mainParallel(process.argv.slice(2));
