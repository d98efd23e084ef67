import { DmasimInputError, DmasimStateError } from "@dmasim/trace";

/** Bad input to an hmm-odp function: names the function, the argument, the value and what was expected. */
export class HmmInputError extends DmasimInputError {
  override readonly name: string = "HmmInputError";
}

/** A valid call the mm or HMM model refuses in its current state; `code` is the errno the kernel would use. */
export class HmmStateError extends DmasimStateError {
  override readonly name: string = "HmmStateError";
}
