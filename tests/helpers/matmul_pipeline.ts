/**
 * Raw-WebGPU helpers for plans from `kernels/codegen/matmul/plan.ts`: compile with errors surfaced, bind, encode.
 *
 * @module
 */

import type { MatmulPlan } from "../../kernels/codegen/matmul/plan.ts";

/**
 * Compiles WGSL into a compute pipeline. Validation and internal errors (bad WGSL, limits) are
 * caught with error scopes and rethrown with `label`, instead of surfacing later as an
 * "invalid pipeline" on first use.
 */
export async function compileChecked(
  device: GPUDevice,
  code: string,
  label: string,
): Promise<GPUComputePipeline> {
  device.pushErrorScope("internal");
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ label, code });
  const pipeline = device.createComputePipeline({
    label,
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const validation = await device.popErrorScope();
  const internal = await device.popErrorScope();
  const error = validation ?? internal;
  if (error) throw new Error(`${label}: shader compilation failed: ${error.message}`);
  return pipeline;
}

/** A plan with its pipelines (two when K is split). */
export interface CompiledMatmul {
  plan: MatmulPlan;
  main: GPUComputePipeline;
  reduce: GPUComputePipeline | null;
}

/** Compiles a plan (and its split-K reduction, if any). */
export async function compileMatmul(
  device: GPUDevice,
  plan: MatmulPlan,
): Promise<CompiledMatmul> {
  const main = await compileChecked(device, plan.code, plan.label);
  const r = plan.splitK?.reduce;
  const reduce = r ? await compileChecked(device, r.code, r.label) : null;
  return { plan, main, reduce };
}

/** Buffers of one matmul; `bias` only with spec.bias, `scratch` only for split-K plans. */
export interface MatmulBuffers {
  a: GPUBuffer;
  b: GPUBuffer;
  c: GPUBuffer;
  bias?: GPUBuffer;
  scratch?: GPUBuffer;
}

function entriesFor(
  label: string,
  need: [string, GPUBuffer | undefined, number][],
): GPUBindGroupEntry[] {
  return need.map(([name, buffer, bytes], binding) => {
    if (!buffer) throw new Error(`${label}: missing ${name} buffer`);
    if (buffer.size < bytes) {
      throw new Error(`${label}: ${name} buffer has ${buffer.size} bytes, needs ${bytes}`);
    }
    return { binding, resource: { buffer } };
  });
}

/** Bind groups for a compiled plan (main, then reduce); checks the buffers are large enough. */
export function bindMatmul(
  device: GPUDevice,
  compiled: CompiledMatmul,
  buffers: MatmulBuffers,
): GPUBindGroup[] {
  const { plan } = compiled;
  const sizes = plan.bindingBytes;
  const hasBias = sizes.bias > 0;
  const group = (pipeline: GPUComputePipeline, need: [string, GPUBuffer | undefined, number][]) =>
    device.createBindGroup({
      label: plan.label,
      layout: pipeline.getBindGroupLayout(0),
      entries: entriesFor(plan.label, need),
    });
  if (!plan.splitK || !compiled.reduce) {
    const need: [string, GPUBuffer | undefined, number][] = [
      ["a", buffers.a, sizes.a],
      ["b", buffers.b, sizes.b],
      ["c", buffers.c, sizes.c],
    ];
    if (hasBias) need.push(["bias", buffers.bias, sizes.bias]);
    return [group(compiled.main, need)];
  }
  const scratch = plan.splitK.scratchBytes;
  const reduceNeed: [string, GPUBuffer | undefined, number][] = [
    ["scratch", buffers.scratch, scratch],
    ["c", buffers.c, sizes.c],
  ];
  if (hasBias) reduceNeed.push(["bias", buffers.bias, sizes.bias]);
  return [
    group(compiled.main, [
      ["a", buffers.a, sizes.a],
      ["b", buffers.b, sizes.b],
      ["scratch", buffers.scratch, scratch],
    ]),
    group(compiled.reduce, reduceNeed),
  ];
}

/** Records a matmul (one dispatch, or two for split-K) into an open compute pass. */
export function encodeMatmul(
  pass: GPUComputePassEncoder,
  compiled: CompiledMatmul,
  bindGroups: GPUBindGroup[],
): void {
  pass.setPipeline(compiled.main);
  pass.setBindGroup(0, bindGroups[0]);
  pass.dispatchWorkgroups(...compiled.plan.workgroups);
  if (compiled.reduce && compiled.plan.splitK) {
    pass.setPipeline(compiled.reduce);
    pass.setBindGroup(0, bindGroups[1]);
    pass.dispatchWorkgroups(...compiled.plan.splitK.reduce.workgroups);
  }
}
