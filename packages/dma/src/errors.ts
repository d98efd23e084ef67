import { DmasimInputError, DmasimInputIssuesError, DmasimStateError } from "@dmasim/trace";

/**
 * Bad input to the DMA API model: an argument that is not even a valid value (a non-integer address, a
 * negative size, an unknown direction). The kernel would misbehave or crash on these; dmasim refuses them
 * before touching any state, naming the function, the argument, its value and what was expected.
 */
export class DmaInputError extends DmasimInputError {
  override readonly name: string = "DmaInputError";
  declare readonly code: "EINVAL";
}

/**
 * A kernel configuration the model cannot run: a swiotlb pool that cannot be allocated, a device looked up
 * with options after it was probed, an unknown BDF, a CPU that does not exist. Code `EINVAL`.
 * `instanceof DmaConfigError` also holds for `DmaOptionsError`, so one catch takes every configuration error.
 */
export class DmaConfigError extends DmasimStateError {
  override readonly name: string = "DmaConfigError";
  declare readonly code: "EINVAL";
  constructor(message: string, options?: ErrorOptions) {
    super("EINVAL", message);
    if (options !== undefined) this.cause = options.cause;
  }

  /** `instanceof DmaConfigError` also holds for `DmaOptionsError`, so one catch takes every configuration error. */
  static override [Symbol.hasInstance](x: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(this, x) || (this === DmaConfigError && x instanceof DmaOptionsError);
  }
}

/**
 * createDmaKernel options or device options that are not valid: `issues` lists every problem, each with its
 * path from `options` (`devices["0000:01:00.0"].dmaMaskBits`); unknown keys are issues too.
 */
export class DmaOptionsError extends DmasimInputIssuesError {
  override readonly name: string = "DmaOptionsError";
  declare readonly code: "EINVAL";
}

/**
 * A valid call the DMA layer refuses in its current state: a second DmaKernel on a platform that has one,
 * a kernel used after `shutdown()`. `code` is the errno the kernel would use (EBUSY, ENODEV).
 */
export class DmaStateError extends DmasimStateError {
  override readonly name: string = "DmaStateError";
}
