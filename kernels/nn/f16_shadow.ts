/**
 * f16 copies of f32 master weights for `--precision f16` training: products read the copy
 * (kernels/ops/matmul_f16.ts) while the optimizer updates the f32 master, and one
 * multi-tensor cast kernel per chunk of weights refreshes every copy after each step (the
 * AdamW of optim.ts calls {@link F16Shadows.refresh} at the end of its update, so the refresh
 * is part of a captured step).
 *
 * @module
 */
import { type Kernel, runtime } from "../core/runtime.ts";
import { internId, planCache } from "../core/plan_cache.ts";
import { keep, Tensor } from "../core/tensor.ts";
import { binding, enables, grid, linearWorkgroup } from "../codegen/wgsl.ts";
import { ROUND_HALF_WGSL } from "../codegen/matmul/f16.ts";
import { registerF16Shadow, unregisterF16Shadow } from "../ops/matmul_f16.ts";
import { chunks } from "./adamw_kernels.ts";

const WG = 256;

/**
 * The cast of a chunk: bindings m0, s0, m1, s1, ... (master f32, copy f16); one workgroup per
 * 256 elements of each member, located through a constant table of workgroup offsets.
 */
export function castChunkKernel(sizes: readonly number[]): Kernel {
  const starts = [0];
  for (const n of sizes) starts.push(starts.at(-1)! + Math.ceil(n / WG));
  const total = starts.at(-1)!;
  const k = sizes.length;
  const decls = sizes.flatMap((_, j) => [
    binding(2 * j, `m${j}`, "f32"),
    binding(2 * j + 1, `s${j}`, "f16", true),
  ]);
  const cases = sizes.map((n, j) =>
    `    case ${j}u: { if (i < ${n}u) { s${j}[i] = f16(rh(m${j}[i])); } }`
  );
  const code = `${enables("f16")}${decls.join("\n")}
${ROUND_HALF_WGSL}
const START: array<u32, ${k + 1}> = array<u32, ${k + 1}>(${starts.map((s) => `${s}u`).join(", ")});
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let w = ${linearWorkgroup(total)};
  if (w >= ${total}u) { return; }
  var j = 0u;
  for (var q = 1u; q < ${k}u; q++) { if (w >= START[q]) { j = q; } }
  let i = (w - START[j]) * ${WG}u + lid;
  switch j {
${cases.join("\n")}
    default: {}
  }
}
`;
  return { code, label: `f16.shadow(${k})`, workgroups: grid(total) };
}

/** The f32 parameters that get an f16 copy: 2-D ones (the weights products read). */
export function f16Candidates(params: readonly Tensor[]): Tensor[] {
  return params.filter((p) => p.dtype === "f32" && p.rank === 2);
}

/** f16 copies of a fixed list of f32 master weights, registered with the f16 matmul. */
export class F16Shadows {
  readonly masters: readonly Tensor[];
  readonly copies: readonly Tensor[];

  /** Allocate, register and fill a copy of each of `masters`. */
  constructor(masters: readonly Tensor[]) {
    if (!runtime().ctx.hasF16) {
      throw new Error("f16 weight copies need a device with the 'shader-f16' feature");
    }
    this.masters = [...masters];
    this.copies = this.masters.map((m) => keep(Tensor.empty(m.shape, "f16")));
    this.masters.forEach((m, i) => registerF16Shadow(m, this.copies[i]));
    this.refresh();
  }

  /** Record the casts master -> copy (one dispatch per chunk of weights). */
  refresh(): void {
    const rt = runtime();
    const limit = Math.min(32, rt.ctx.limits.maxStorageBuffersPerShaderStage ?? 8);
    const idx = this.masters.map((_, i) => i).filter((i) => this.masters[i].size > 0);
    for (const c of chunks(idx, limit, 2, 0)) {
      const sizes = c.map((i) => this.masters[i].size);
      const kernel = planCache(
        `f16.shadow|${internId(sizes.join(","))}`,
        () => castChunkKernel(sizes),
      );
      rt.dispatch(kernel, c.flatMap((i) => [this.masters[i].buffer, this.copies[i].buffer]));
    }
  }

  /** Unregister and free the copies. */
  dispose(): void {
    this.masters.forEach((m) => unregisterF16Shadow(m));
    for (const c of this.copies) c.dispose();
  }
}
