/**
 * GPU tensors: a shape, a dtype and reference-counted storage from the buffer pool.
 *
 * Lifetimes: `tidy(fn)` disposes every tensor created inside `fn` except what it returns or
 * `keep()`s — the same discipline as tf.tidy, which keeps a training loop's GPU memory flat.
 *
 * @module
 */
import type { PooledBuffer } from "./buffer_pool.ts";
import { allocTyped, byteSize, type DType, viewTyped } from "./dtype.ts";
import { runtime } from "./runtime.ts";

/** A typed array matching one of our dtypes. */
export type AnyTypedArray = Float32Array | Float16Array | Int32Array | Uint32Array;

/** Reverse-mode record of how a tensor was computed. */
export interface GradNode {
  op: string;
  inputs: readonly Tensor[];
  /** Gradients w.r.t. each input (null where not needed), given the output's gradient. */
  backward: (grad: Tensor) => readonly (Tensor | null)[];
  /**
   * Set on each output of an op with several outputs (autograd.ts `recordJoint`): the tape
   * runs this rule once, with every output's gradient, instead of `backward`.
   */
  joint?: JointGrad;
}

/** The shared backward rule of an op with several outputs (see {@link GradNode.joint}). */
export interface JointGrad {
  outputs: readonly Tensor[];
  /** Gradients w.r.t. each input, given each output's gradient (null where none flowed). */
  backward: (grads: readonly (Tensor | null)[]) => readonly (Tensor | null)[];
}

class Storage {
  refs = 1;
  constructor(readonly buffer: PooledBuffer) {}
}

const scopes: Set<Tensor>[] = [];

/** An n-dimensional array on the GPU, always contiguous (row-major). */
export class Tensor {
  readonly shape: readonly number[];
  readonly size: number;
  readonly dtype: DType;
  #storage: Storage | null;
  /** Set on leaves that collect gradients (parameters) and on results computed from them. */
  requiresGrad = false;
  /** Accumulated gradient of a leaf after `backward`. */
  grad: Tensor | null = null;
  /** How this tensor was computed, when gradients flow through it. */
  node: GradNode | null = null;
  /** Human-readable name (parameters), used in error messages. */
  name = "";
  /** For integer tensors: known [min, max] of the values, checked by indexing ops. */
  intRange: [number, number] | null = null;

  /** Internal: use the creation functions (`tensor`, `zeros`, ...) or ops. */
  constructor(shape: readonly number[], dtype: DType, storage: Storage) {
    validateShape(shape);
    this.shape = Object.freeze([...shape]);
    this.size = shape.reduce((a, b) => a * b, 1);
    this.dtype = dtype;
    this.#storage = storage;
    scopes.at(-1)?.add(this);
  }

  /** Allocate an uninitialized tensor (for op outputs). */
  static empty(shape: readonly number[], dtype: DType = "f32"): Tensor {
    validateShape(shape);
    const n = shape.reduce((a, b) => a * b, 1);
    const buffer = runtime().pool.acquire(n * byteSize(dtype));
    return new Tensor(shape, dtype, new Storage(buffer));
  }

  /**
   * Internal (captures): a new tensor over a live pool buffer, adding one holder to it, so
   * disposing the tensor releases that holder only.
   */
  static fromBuffer(buffer: PooledBuffer, shape: readonly number[], dtype: DType): Tensor {
    runtime().pool.retain(buffer);
    return new Tensor(shape, dtype, new Storage(buffer));
  }

  /** The tensor's GPU buffer; throws on a disposed tensor. */
  get buffer(): PooledBuffer {
    if (!this.#storage) {
      throw new Error(`use of a disposed tensor${this.name ? ` '${this.name}'` : ""}`);
    }
    return this.#storage.buffer;
  }

  /** Whether `dispose()` has run. */
  get disposed(): boolean {
    return this.#storage === null;
  }

  /** Number of dimensions. */
  get rank(): number {
    return this.shape.length;
  }

  /** A tensor sharing this storage with another shape of the same size (no copy, no grad). */
  view(shape: readonly number[]): Tensor {
    validateShape(shape); // before taking a reference the constructor would then leak
    const n = shape.reduce((a, b) => a * b, 1);
    if (n !== this.size) {
      throw new Error(
        `cannot view shape [${this.shape}] as [${shape}]: sizes ${this.size} != ${n}`,
      );
    }
    const s = this.#storage;
    if (!s) throw new Error("view of a disposed tensor");
    s.refs++;
    const v = new Tensor(shape, this.dtype, s);
    v.intRange = this.intRange;
    return v;
  }

  /** Release the storage (when no view shares it). Idempotent. */
  dispose(): void {
    const s = this.#storage;
    if (!s) return;
    this.#storage = null;
    this.node = null;
    if (--s.refs === 0) runtime().pool.release(s.buffer);
  }

  /** Copy the values back to the CPU (flushes pending work). */
  async read(): Promise<AnyTypedArray> {
    const [out] = await readAll([this]);
    return out;
  }

  /** A single value, for scalar tensors. */
  async item(): Promise<number> {
    if (this.size !== 1) {
      throw new Error(`item() needs a tensor of one element, got [${this.shape}]`);
    }
    return (await this.read())[0];
  }

  toString(): string {
    return `Tensor(${this.dtype}[${this.shape.join(", ")}]${this.name ? ` ${this.name}` : ""})`;
  }
}

function validateShape(shape: readonly number[]): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`invalid shape [${shape}]`);
  }
}

/** Read several tensors back with a single submit and map. */
export async function readAll(tensors: readonly Tensor[]): Promise<AnyTypedArray[]> {
  const bufs = await runtime().read(
    tensors.map((t) => ({ buffer: t.buffer, bytes: t.size * byteSize(t.dtype) })),
  );
  return bufs.map((b, i) => viewTyped(tensors[i].dtype, b, tensors[i].size));
}

/** Upload values into a new tensor. */
export function tensor(
  data: ArrayLike<number> | AnyTypedArray,
  shape: readonly number[] = [data.length],
  dtype: DType = "f32",
): Tensor {
  return makeTensor(data, shape, dtype, false);
}

/**
 * {@link tensor} of values that depend only on shapes and configuration (positions, row
 * indices, a support): a capture (kernels/core/capture.ts) replays them as recorded, and
 * rejects the step if two recordings disagree.
 */
export function constTensor(
  data: ArrayLike<number> | AnyTypedArray,
  shape: readonly number[] = [data.length],
  dtype: DType = "f32",
): Tensor {
  // Small constants (positions, row indices, uniform blocks) are uploaded once and shared:
  // a warm step uploads none of them, and a capture has nothing to replay for them.
  if (data.length === 0 || data.length > CONST_MAX_VALUES) {
    return makeTensor(data, shape, dtype, true);
  }
  const key = `${dtype}|${shape}|${Array.prototype.join.call(data, ",")}`;
  let base = constCache.get(key);
  if (base) constCache.delete(key); // re-inserted: most recently used last
  else {
    base = keep(makeTensor(data, shape, dtype, true)); // not owned by the caller's tidy
    if (constCache.size >= CONST_MAX_ENTRIES) {
      const [k, old] = constCache.entries().next().value!;
      constCache.delete(k);
      old.dispose(); // views handed out keep the storage alive
    }
  }
  constCache.set(key, base);
  return base.view(shape);
}

/** Largest constant shared by {@link constTensor}, in values; entries kept (LRU). */
const CONST_MAX_VALUES = 4096;
const CONST_MAX_ENTRIES = 4096;
const constCache = new Map<string, Tensor>();

function makeTensor(
  data: ArrayLike<number> | AnyTypedArray,
  shape: readonly number[],
  dtype: DType,
  isConst: boolean,
): Tensor {
  validateShape(shape); // before uploading: [-1, -2] would otherwise "fit" two values
  const n = shape.reduce((a, b) => a * b, 1);
  if (data.length !== n) {
    throw new Error(`tensor(): ${data.length} values do not fill shape [${shape}] (${n})`);
  }
  if (dtype === "f16" && !runtime().ctx.hasF16) {
    throw new Error("f16 tensors need a device with the 'shader-f16' feature");
  }
  const typed = allocTyped(dtype, n);
  typed.set(data as ArrayLike<number>);
  let range: [number, number] | null = null;
  if (dtype === "i32" || dtype === "u32") {
    range = [Infinity, -Infinity];
    for (let i = 0; i < n; i++) {
      const v = typed[i];
      if (v !== data[i]) throw new Error(`tensor(): value ${data[i]} is not a valid ${dtype}`);
      if (v < range[0]) range[0] = v;
      if (v > range[1]) range[1] = v;
    }
  }
  // Deno's writeBuffer panics on zero bytes: an empty tensor needs no upload.
  // `data` names the upload's source, so a capture can refill it from a new call's inputs.
  const buffer = n === 0
    ? runtime().pool.acquire(4)
    : isConst
    ? runtime().uploadStatic(typed, n * byteSize(dtype))
    : runtime().upload(typed, n * byteSize(dtype), data);
  const t = new Tensor(shape, dtype, new Storage(buffer));
  t.intRange = range;
  return t;
}

/** Run `fn`, then dispose every tensor it created except those it returns or `keep()`s. */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    // Like tf.tidy: when `fn` throws, what it allocated is freed too (no leaked buffers).
    scopes.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) {
    throw new Error("tidy() takes a synchronous function; await outside it");
  }
  const survivors = new Set<Tensor>();
  collectTensors(result, survivors);
  const parent = scopes.at(-1);
  for (const t of scope) {
    if (survivors.has(t)) parent?.add(t);
    else t.dispose();
  }
  return result;
}

/** Exempt a tensor from the enclosing `tidy` scopes (it lives until disposed). */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

function collectTensors(value: unknown, out: Set<Tensor>, depth = 0): void {
  if (value instanceof Tensor) out.add(value);
  else if (depth < 3 && Array.isArray(value)) {
    for (const v of value) collectTensors(v, out, depth + 1);
  } else if (depth < 3 && value && typeof value === "object" && !ArrayBuffer.isView(value)) {
    for (const v of Object.values(value)) collectTensors(v, out, depth + 1);
  }
}
