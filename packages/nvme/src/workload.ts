import { VERIFY_BLOCK, patternInto } from "./pattern.js";
import type { NvmeHost } from "./system.js";
import { checkOptions } from "./workload-options.js";
import type { WorkloadOptions, WorkloadResult } from "./workload-options.js";
import { WorkloadRun } from "./workload-run.js";

/** Fills the namespace with generation-0 data (what the drive held before the job). */
export function prefillNamespace(sys: NvmeHost): Uint32Array {
  const blocks = Math.floor(sys.controller.namespaceBytes / VERIFY_BLOCK);
  const words = new Uint32Array(VERIFY_BLOCK / 4);
  const bytes = new Uint8Array(words.buffer);
  for (let b = 0; b < blocks; b++) {
    patternInto(words, b, 0);
    sys.controller.namespace.write(b * VERIFY_BLOCK, bytes);
  }
  return new Uint32Array(blocks);
}

/**
 * Runs a job: keeps up to `queueDepth` requests in flight, lets the controller execute a random number
 * of the pending commands at a time, and verifies every completion against the expected data.
 */
export function runWorkload(sys: NvmeHost, options: WorkloadOptions, generations?: Uint32Array): WorkloadResult {
  const { driver, controller } = sys;
  const o = checkOptions(options, driver.queueDepth, controller.namespaceBytes, driver.limits.maxSectors * 512);
  const run = new WorkloadRun(sys, o, generations ?? prefillNamespace(sys));
  while (run.completed < o.ops) {
    while (driver.inFlight < o.queueDepth && run.submitted < o.ops) run.submit();
    run.serviceAndPoll();
  }
  run.releaseBuffers();
  return run.result();
}
