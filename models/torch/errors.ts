/**
 * The one error type of the torch checkpoint reader.
 *
 * @module
 */

/**
 * A checkpoint could not be read. The message is one line, `<file>: <problem>`, so a CLI can
 * print it as is; `path` and `problem` hold the two parts for callers that want them apart.
 */
export class TorchCheckpointError extends Error {
  /**
   * @param path the checkpoint file (or a description of the source) the problem is in.
   * @param problem what is wrong, one line, without the file name.
   */
  constructor(readonly path: string, readonly problem: string) {
    super(`${path}: ${problem}`);
    this.name = "TorchCheckpointError";
  }
}
