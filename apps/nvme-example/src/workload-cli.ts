#!/usr/bin/env node
import { processIo } from "./command.js";
import { workloadMain } from "./workload-command.js";

// pnpm --filter @dmasim/nvme-example workload [-- options]; --help lists them (workload-command.ts).
process.exitCode = workloadMain(process.argv.slice(2), processIo());
