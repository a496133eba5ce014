/**
 * What the JOWA importer reads from an authors' state dict: the tensors by key with the
 * wrapper prefixes stripped, and the one error type that lists every problem found.
 *
 * Their trainer saves through DDP and torch.compile, so keys may start with `module.`,
 * `_orig_mod.` or both (their own loader strips these, agent.py:89-94).
 *
 * @module
 */
import type { TorchCheckpoint, TorchDtype } from "../models/torch/mod.ts";

/** One source tensor (a torch checkpoint entry, or a synthetic one in tests). */
export interface SourceTensor {
  /** The key as stored (before prefix stripping). */
  readonly name: string;
  readonly dtype: TorchDtype;
  readonly shape: readonly number[];
  readFloat32(): Promise<Float32Array>;
}

/** A state dict by stripped key. */
export type Source = Map<string, SourceTensor>;

/** A state dict that cannot be imported: `problems` lists all of them, one line each. */
export class JowaImportError extends Error {
  constructor(readonly file: string, readonly problems: readonly string[]) {
    const list = problems.length === 1
      ? problems[0]
      : `${problems.length} problems:\n  ${problems.join("\n  ")}`;
    super(`${file}: ${list}`);
    this.name = "JowaImportError";
  }
}

const PREFIXES = ["module.", "_orig_mod."];

/** `key` without leading `module.` / `_orig_mod.` wrappers (in any order, repeated). */
export function stripPrefixes(key: string): string {
  for (let again = true; again;) {
    again = false;
    for (const p of PREFIXES) {
      if (key.startsWith(p)) {
        key = key.slice(p.length);
        again = true;
      }
    }
  }
  return key;
}

/** The tensors of `tensors` by stripped key; two keys that strip alike are an error. */
export function sourceOf(file: string, tensors: readonly SourceTensor[]): Source {
  const out: Source = new Map();
  const clashes: string[] = [];
  for (const t of tensors) {
    const k = stripPrefixes(t.name);
    const prev = out.get(k);
    if (prev) clashes.push(`keys '${prev.name}' and '${t.name}' both name '${k}'`);
    else out.set(k, t);
  }
  if (clashes.length) throw new JowaImportError(file, clashes);
  if (out.size === 0) throw new JowaImportError(file, ["the state dict holds no tensors"]);
  return out;
}

/** The source of an open torch checkpoint. */
export function checkpointSource(ckpt: TorchCheckpoint): Source {
  return sourceOf(ckpt.path, ckpt.tensors);
}

/** Floating dtypes a parameter may have (converted to f32). */
export const FLOAT_DTYPES: readonly TorchDtype[] = ["F32", "F16", "BF16"];

/** One tensor of our checkpoint: its name, shape and how to produce its f32 values. */
export interface MappedTensor {
  name: string;
  shape: number[];
  read(): Promise<Float32Array>;
}

/**
 * Reads each source key once while consecutive requests name it (the Q ensemble's members
 * are slices of one stacked tensor), so peak memory stays about one source tensor.
 */
export class OneTensorCache {
  #key = "";
  #value: Promise<Float32Array> | null = null;

  constructor(readonly source: Source) {}

  /** The f32 values of source key `key`. */
  read(key: string): Promise<Float32Array> {
    if (this.#key !== key || !this.#value) {
      this.#key = key;
      this.#value = this.source.get(key)!.readFloat32();
    }
    return this.#value;
  }
}

/** Product of a shape. */
export const numel = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

/** Shapes equal. */
export const sameShape = (a: readonly number[], b: readonly number[]): boolean =>
  a.length === b.length && a.every((v, i) => v === b[i]);

/** `[a,b]` for messages. */
export const fmtShape = (s: readonly number[]): string => `[${s.join(",")}]`;
