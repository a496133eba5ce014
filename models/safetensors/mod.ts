/**
 * Checkpoint files: a strict, engine-independent safetensors reader and writer over plain
 * bytes and typed arrays, plus name/shape checking against a model's expected parameters.
 *
 * ```ts
 * await writeSafetensors("w.safetensors", {
 *   "head.weight": { dtype: "F32", shape: [2, 3], data: new Float32Array(6) },
 * }, { step: "100" });
 * const file = await readSafetensors("w.safetensors");
 * checkNames(new Map([["head.weight", [2, 3]]]), file);
 * const w = file.tensors.get("head.weight")!.toFloat32();
 * ```
 *
 * @module
 */

import { quote, SafetensorsError } from "./format.ts";
import { formatShape, SafetensorsFile } from "./read.ts";

export { DTYPE_SIZE, MAX_HEADER_SIZE, SafetensorsError, SUPPORTED_DTYPES } from "./format.ts";
export type { SafetensorsDtype } from "./format.ts";
export { decodeSafetensors, readSafetensors, SafetensorsTensor } from "./read.ts";
export type { DtypeArray, SafetensorsFile } from "./read.ts";
export { encodeSafetensors, writeSafetensors } from "./write.ts";
export type { Metadata, TensorData, TensorInput, TensorInputs } from "./write.ts";
export {
  bf16ArrayToF32,
  bf16BitsToF32,
  f16ArrayToF32,
  f16BitsToF32,
  f32ArrayToBf16,
  f32ArrayToF16,
  f32ToBf16Bits,
  f32ToF16Bits,
} from "./dtype_convert.ts";

/** Thrown by {@link checkNames}; lists every difference, also available as fields. */
export class CheckpointMismatchError extends SafetensorsError {
  /**
   * Build the error and its multi-line message.
   * @param missing expected names absent from the file.
   * @param unexpected names in the file that were not expected.
   * @param shapeMismatches names present in both with different shapes.
   */
  constructor(
    readonly missing: string[],
    readonly unexpected: string[],
    readonly shapeMismatches: { name: string; expected: number[]; actual: number[] }[],
  ) {
    const lines: string[] = [];
    if (missing.length > 0) {
      lines.push(`missing ${missing.length}: ${missing.map(quote).join(", ")}`);
    }
    if (unexpected.length > 0) {
      lines.push(`unexpected ${unexpected.length}: ${unexpected.map(quote).join(", ")}`);
    }
    for (const m of shapeMismatches) {
      lines.push(
        `shape mismatch ${quote(m.name)}: expected ${formatShape(m.expected)}, ` +
          `file has ${formatShape(m.actual)}`,
      );
    }
    super(`checkpoint does not match the model:\n  ${lines.join("\n  ")}`);
    this.name = "CheckpointMismatchError";
  }
}

/**
 * Check that a file holds exactly the expected tensor names with the expected shapes.
 * Names are reported sorted, so messages are stable.
 * @param expected expected shape for each parameter name.
 * @param file a decoded file, or any map from name to something with a `shape`.
 * @throws {CheckpointMismatchError} listing all missing and unexpected names and all shape
 * mismatches at once.
 */
export function checkNames(
  expected: ReadonlyMap<string, readonly number[]>,
  file: SafetensorsFile | ReadonlyMap<string, { shape: readonly number[] }>,
): void {
  const actual: ReadonlyMap<string, { shape: readonly number[] }> = file instanceof Map
    ? file
    : (file as SafetensorsFile).tensors;
  const missing: string[] = [];
  const mismatches: { name: string; expected: number[]; actual: number[] }[] = [];
  for (const [name, shape] of expected) {
    const t = actual.get(name);
    if (t === undefined) missing.push(name);
    else if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      mismatches.push({ name, expected: [...shape], actual: [...t.shape] });
    }
  }
  const unexpected = [...actual.keys()].filter((n) => !expected.has(n));
  if (missing.length + unexpected.length + mismatches.length === 0) return;
  const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  missing.sort(byName);
  unexpected.sort(byName);
  mismatches.sort((a, b) => byName(a.name, b.name));
  throw new CheckpointMismatchError(missing, unexpected, mismatches);
}
