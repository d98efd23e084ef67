import { DmasimInputError, DmasimStateError, hex } from "@dmasim/trace";

/** A bad argument to the NVMe model (an option, a queue id, a block size): names it, its value and what was expected. */
export class NvmeInputError extends DmasimInputError {
  override readonly name: string = "NvmeInputError";
}

/**
 * A valid call the NVMe model refuses in its state: `ENOMEM` (no coherent memory for the queues), `EBUSY`
 * (a descriptor pool destroyed with blocks in use), `EIO` (a completion for a tag not in flight).
 */
export class NvmeStateError extends DmasimStateError {
  override readonly name: string = "NvmeStateError";
}

/**
 * A workload could not do what it was asked: a request was refused or completed with an error, or data
 * did not verify. `code` is `EIO`.
 */
export class WorkloadError extends DmasimStateError {
  override readonly name: string = "WorkloadError";
  constructor(message: string) {
    super("EIO", message);
  }
}

/** The controller's way out of a command it cannot execute: `status` is the NVMe status field (with DNR). */
export class NvmeCommandError extends DmasimStateError {
  override readonly name: string = "NvmeCommandError";
  /** @param status The NVMe status field of the completion, with the Do Not Retry bit. */
  constructor(readonly status: number) {
    super("EIO", `NVMe status ${hex(status)}`);
  }
}
