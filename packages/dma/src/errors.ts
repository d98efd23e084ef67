import { DmasimInputError, DmasimStateError } from "@dmasim/trace";

/**
 * Bad input to the DMA API model: an argument that is not even a valid value (a non-integer address, a
 * negative size, an unknown direction). The kernel would misbehave or crash on these; dmasim refuses them
 * before touching any state, naming the function, the argument, its value and what was expected.
 */
export class DmaInputError extends DmasimInputError {
  override readonly name: string = "DmaInputError";
  declare readonly code: "EINVAL";
}

/** A platform or kernel configuration the model cannot run (unknown BDF, bad option). Code `EINVAL`. */
export class DmaConfigError extends DmasimStateError {
  override readonly name: string = "DmaConfigError";
  declare readonly code: "EINVAL";
  constructor(message: string, options?: ErrorOptions) {
    super("EINVAL", message);
    if (options !== undefined) this.cause = options.cause;
  }
}

/**
 * A valid call the DMA layer refuses in its current state: a second DmaKernel on a platform that has one,
 * a kernel used after `shutdown()`. `code` is the errno the kernel would use (EBUSY, ENODEV).
 */
export class DmaStateError extends DmasimStateError {
  override readonly name: string = "DmaStateError";
}
