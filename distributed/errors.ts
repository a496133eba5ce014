/** The error type of the distributed layer. @module */

/**
 * A failure of the distributed layer: no MPI library, an unsupported MPI, a failed MPI call,
 * or bad arguments to a collective. Its message is always a single line, fit to print as is.
 */
export class DistributedError extends Error {
  /** @param message one line; newlines are folded into "; ". */
  constructor(message: string) {
    super(message.replace(/\s*\n\s*/g, "; "));
    this.name = "DistributedError";
  }
}
