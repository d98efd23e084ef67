#!/usr/bin/env node
import { processIo } from "./command.js";
import { compareMain } from "./compare-command.js";

// pnpm --filter @dmasim/nvme-example compare [-- --ops N --cost Name=ns]; --help lists the options.
process.exitCode = compareMain(process.argv.slice(2), processIo());
