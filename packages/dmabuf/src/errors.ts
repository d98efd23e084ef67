import { DmasimInputError, DmasimStateError } from "@dmasim/trace";

/** Bad input to a dmabuf function: names the function, the argument, the value and what was expected. */
export class DmaBufInputError extends DmasimInputError {
  override readonly name: string = "DmaBufInputError";
}

/** A valid call refused in the current state; `code` is the errno the kernel would use. */
export class DmaBufStateError extends DmasimStateError {
  override readonly name: string = "DmaBufStateError";
}
