#!/usr/bin/env node
import { main } from "./cli.js";

// A bug of the model (not bad input) still prints one line, with exit status 70 as the dmasim CLI does.
try {
  process.exitCode = main(process.argv.slice(2), { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) });
} catch (e) {
  process.stderr.write(`gpu-p2p: internal error: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 70;
}
