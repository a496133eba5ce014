/**
 * Read PyTorch checkpoints (`torch.save(state_dict)`, the zip format) in pure TypeScript,
 * without Python or torch at run time.
 *
 * - {@link openTorchCheckpoint} lists the tensors and reads each one lazily from the file.
 * - The pickle inside is decoded by a restricted unpickler that never imports or runs what
 *   a file names: only dicts of tensors are accepted (see `pickle.ts`).
 * - Every failure is a {@link TorchCheckpointError} with a one-line `<file>: <problem>`.
 *
 * ```ts
 * import { openTorchCheckpoint } from "./models/torch/mod.ts";
 * using ckpt = await openTorchCheckpoint("JOWA_150M.pt");
 * for (const t of ckpt.tensors) console.log(t.name, t.dtype, t.shape);
 * const w = await ckpt.get("head.weight")!.readFloat32();
 * ```
 *
 * @module
 */

export {
  openTorchCheckpoint,
  type OpenTorchCheckpointOptions,
  type TorchCheckpoint,
  type TorchCheckpointProgress,
  type TorchCheckpointTensor,
} from "./torch_checkpoint.ts";
export { TorchCheckpointError } from "./errors.ts";
export {
  DTYPE_BYTES,
  f16BitsToF32,
  i64ToF32,
  toFloat32,
  type TorchDtype,
  type TorchTypedArray,
} from "./dtype.ts";
export { unpickle } from "./pickle.ts";
export { crc32, type ZipEntry, ZipReader } from "./zip.ts";
