/**
 * A minimal module system: named, nested parameters, train/eval mode, and listing, saving and
 * loading parameters by dotted name ("blocks.0.attn.qkv.weight").
 *
 * @module
 */
import { byteSize } from "../core/dtype.ts";
import { runtime } from "../core/runtime.ts";
import { binding, grid, linearWorkgroup } from "../codegen/wgsl.ts";
import { keep, readAll, type Tensor, tensor } from "../core/tensor.ts";

/** Values of one parameter as stored on the CPU. */
export interface ParameterValues {
  shape: readonly number[];
  data: Float32Array;
}

/** Base class of every layer and model. */
export class Module {
  /** Dropout and similar layers act only in training mode. */
  training = true;
  readonly #params = new Map<string, Tensor>();
  readonly #children = new Map<string, Module>();

  /** Register a trainable parameter (kept alive outside `tidy` scopes). */
  protected param(name: string, t: Tensor): Tensor {
    if (this.#params.has(name) || this.#children.has(name)) {
      throw new Error(`duplicate parameter or child name '${name}'`);
    }
    t.requiresGrad = true;
    t.name = name;
    this.#params.set(name, keep(t));
    return t;
  }

  /** Register a sub-module. */
  protected child<M extends Module>(name: string, m: M): M {
    if (this.#params.has(name) || this.#children.has(name)) {
      throw new Error(`duplicate parameter or child name '${name}'`);
    }
    this.#children.set(name, m);
    return m;
  }

  /** Every parameter with its full dotted name, in registration order. */
  namedParameters(prefix = ""): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, p] of this.#params) out.push([prefix + n, p]);
    for (const [n, c] of this.#children) out.push(...c.namedParameters(`${prefix}${n}.`));
    return out;
  }

  /**
   * Parameters in registration order. Their `.name` stays the local name given to `param()`:
   * a full dotted name depends on which module is the root, so it comes from
   * `namedParameters()` (which is what optimizers and checkpoints take).
   */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }

  /** Total number of parameter elements. */
  parameterCount(): number {
    return this.namedParameters().reduce((a, [, p]) => a + p.size, 0);
  }

  /** Switch this module and its children to training (or evaluation) mode. */
  train(on = true): this {
    this.training = on;
    for (const c of this.#children.values()) c.train(on);
    return this;
  }

  /** Evaluation mode. */
  eval(): this {
    return this.train(false);
  }

  /** Read every parameter back (one readback for all). */
  async stateDict(): Promise<Map<string, ParameterValues>> {
    const named = this.namedParameters();
    const values = await readAll(named.map(([, p]) => p));
    return new Map(
      named.map(([n, p], i) => [n, { shape: p.shape, data: values[i] as Float32Array }]),
    );
  }

  /**
   * Replace every parameter's values. Names and shapes must match exactly; one error lists
   * what is missing, unexpected or misshapen, and nothing is changed in that case.
   */
  loadStateDict(values: ReadonlyMap<string, ParameterValues>): void {
    const named = new Map(this.namedParameters());
    const missing = [...named.keys()].filter((n) => !values.has(n));
    const unexpected = [...values.keys()].filter((n) => !named.has(n));
    const misshapen = [...named].filter(([n, p]) => {
      const v = values.get(n);
      return v && (v.shape.join() !== p.shape.join() || v.data.length !== p.size);
    }).map(([n, p]) => `${n} (model [${p.shape}], given [${values.get(n)!.shape}])`);
    if (missing.length || unexpected.length || misshapen.length) {
      const parts = [];
      if (missing.length) parts.push(`missing: ${missing.join(", ")}`);
      if (unexpected.length) parts.push(`unexpected: ${unexpected.join(", ")}`);
      if (misshapen.length) parts.push(`shape mismatch: ${misshapen.join(", ")}`);
      throw new Error(`loadStateDict: ${parts.join("; ")}`);
    }
    for (const [n, p] of named) assignValues(p, values.get(n)!.data);
  }
}

/** Overwrite a tensor's values from the CPU (queued before later commands run). */
export function assignValues(t: Tensor, data: Float32Array): void {
  if (data.length !== t.size) {
    throw new Error(`assignValues: ${data.length} values for ${t} (${t.size})`);
  }
  // Upload into a fresh buffer and copy on the queue, so commands recorded earlier still see
  // the old values (a direct writeBuffer would land before them).
  const src = tensor(data, t.shape);
  copyTensor(src, t);
  src.dispose();
}

/**
 * Record a copy of `src` into `dst` (same size and dtype). An integer `dst` takes `src`'s
 * known value range, so indexing ops keep checking (not clamping) the values it now holds.
 */
export function copyTensor(src: Tensor, dst: Tensor): void {
  if (src.size !== dst.size || src.dtype !== dst.dtype) {
    throw new Error(`copyTensor: ${src} into ${dst}`);
  }
  // A copy kernel over 32-bit words rather than copyBufferToBuffer: it stays inside the open
  // compute pass (a buffer copy would end it). Pool buffers are 256-byte multiples, so the
  // last word of an odd-length f16 tensor is in bounds.
  const words = Math.ceil((src.size * byteSize(src.dtype)) / 4);
  if (words > 0) {
    const groups = Math.ceil(words / 256);
    runtime().dispatch({
      code: `${binding(0, "src", "u32")}
${binding(1, "dst", "u32", true)}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = ${linearWorkgroup(groups)} * 256u + lid;
  if (i < ${words}u) { dst[i] = src[i]; }
}`,
      label: "copyTensor",
      workgroups: grid(groups),
    }, [src.buffer, dst.buffer]);
  }
  dst.intRange = src.intRange;
}
