/**
 * Raw-WebGPU helpers for plans from `matmul_wgsl.ts`: compile with errors surfaced, bind, encode.
 *
 * @module
 */

import type { MatmulPlan } from "./matmul_wgsl.ts";

/**
 * Compiles a plan into a compute pipeline. Validation and internal errors (bad WGSL, limits)
 * are caught with error scopes and rethrown with the plan label, instead of surfacing later
 * as an "invalid pipeline" on first use.
 */
export async function compileMatmul(
  device: GPUDevice,
  plan: MatmulPlan,
): Promise<GPUComputePipeline> {
  device.pushErrorScope("internal");
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ label: plan.label, code: plan.code });
  const pipeline = device.createComputePipeline({
    label: plan.label,
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const validation = await device.popErrorScope();
  const internal = await device.popErrorScope();
  const error = validation ?? internal;
  if (error) throw new Error(`${plan.label}: shader compilation failed: ${error.message}`);
  return pipeline;
}

/** Buffers of one matmul; `bias` only when the plan's spec has `bias`. */
export interface MatmulBuffers {
  a: GPUBuffer;
  b: GPUBuffer;
  c: GPUBuffer;
  bias?: GPUBuffer;
}

/** Bind group for a compiled plan; checks the buffers are large enough. */
export function bindMatmul(
  device: GPUDevice,
  plan: MatmulPlan,
  pipeline: GPUComputePipeline,
  buffers: MatmulBuffers,
): GPUBindGroup {
  const need: [keyof MatmulBuffers, number][] = [
    ["a", plan.bindingBytes.a],
    ["b", plan.bindingBytes.b],
    ["c", plan.bindingBytes.c],
  ];
  if (plan.bindingBytes.bias > 0) need.push(["bias", plan.bindingBytes.bias]);
  const entries: GPUBindGroupEntry[] = [];
  need.forEach(([name, bytes], binding) => {
    const buffer = buffers[name];
    if (!buffer) throw new Error(`${plan.label}: missing ${name} buffer`);
    if (buffer.size < bytes) {
      throw new Error(`${plan.label}: ${name} buffer has ${buffer.size} bytes, needs ${bytes}`);
    }
    entries.push({ binding, resource: { buffer } });
  });
  return device.createBindGroup({
    label: plan.label,
    layout: pipeline.getBindGroupLayout(0),
    entries,
  });
}

/** Records one dispatch of a plan into an open compute pass. */
export function encodeMatmul(
  pass: GPUComputePassEncoder,
  plan: MatmulPlan,
  pipeline: GPUComputePipeline,
  bindGroup: GPUBindGroup,
): void {
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(...plan.workgroups);
}
