import { DmasimInputError, DmasimStateError } from "@dmasim/trace";

/** Bad input to an RDMA verb or driver call: names the function, the argument, the value and what was expected. */
export class RdmaInputError extends DmasimInputError {
  override readonly name: string = "RdmaInputError";
}

/** A valid call the NIC model refuses in its current state; `code` is the errno the kernel would use. */
export class RdmaStateError extends DmasimStateError {
  override readonly name: string = "RdmaStateError";
}
