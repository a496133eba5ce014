/**
 * Minimal raw-WebGPU plumbing for attention plans (used by the tests and the benchmark; the
 * engine has its own runtime): compile a plan with validation errors named by its label, bind
 * buffers by name, read results back.
 *
 * @module
 */

import {
  ATTENTION_PARAMS_BYTES,
  attentionParams,
  type KernelPlan,
} from "../../kernels/codegen/attention/common.ts";

/** A compiled plan. */
export interface CompiledPlan {
  plan: KernelPlan;
  pipeline: GPUComputePipeline;
}

const cache = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

/** Compile a plan (cached by code); throws an Error naming the plan label on any error. */
export async function compilePlan(device: GPUDevice, plan: KernelPlan): Promise<CompiledPlan> {
  let byCode = cache.get(device);
  if (!byCode) cache.set(device, byCode = new Map());
  const hit = byCode.get(plan.code);
  if (hit) return { plan, pipeline: hit };
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code: plan.code, label: plan.label });
  const info = await module.getCompilationInfo();
  const pipeline = device.createComputePipeline({
    label: plan.label,
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const err = await device.popErrorScope();
  const msgs = info.messages.filter((m) => m.type === "error")
    .map((m) => `line ${m.lineNum}: ${m.message}`);
  if (err || msgs.length) {
    throw new Error(`${plan.label}: ${err?.message ?? ""} ${msgs.join("; ")}`);
  }
  byCode.set(plan.code, pipeline);
  return { plan, pipeline };
}

/** Record one dispatch of a compiled plan, binding `buffers` by the plan's binding names. */
export function encodePlan(
  device: GPUDevice,
  pass: GPUComputePassEncoder,
  c: CompiledPlan,
  buffers: Record<string, GPUBuffer>,
): void {
  const entries = c.plan.bindings.map((name, binding) => {
    const buffer = buffers[name];
    if (!buffer) throw new Error(`${c.plan.label}: no buffer for binding "${name}"`);
    return { binding, resource: { buffer } };
  });
  const group = device.createBindGroup({
    layout: c.pipeline.getBindGroupLayout(0),
    entries,
    label: c.plan.label,
  });
  pass.setPipeline(c.pipeline);
  pass.setBindGroup(0, group);
  pass.dispatchWorkgroups(...c.plan.workgroups);
}

/** Run compiled plans in order in one compute pass and submit; validation errors throw. */
export async function runPlans(
  device: GPUDevice,
  plans: CompiledPlan[],
  buffers: Record<string, GPUBuffer>,
): Promise<void> {
  device.pushErrorScope("validation");
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  for (const c of plans) encodePlan(device, pass, c, buffers);
  pass.end();
  device.queue.submit([enc.finish()]);
  const err = await device.popErrorScope();
  if (err) throw new Error(`${plans.map((c) => c.plan.label).join(", ")}: ${err.message}`);
}

/** A storage buffer holding `data` (or `bytes` zero bytes). */
export function storageBuffer(
  device: GPUDevice,
  data: Float32Array<ArrayBuffer> | number,
): GPUBuffer {
  const bytes = typeof data === "number" ? data : data.byteLength;
  const buf = device.createBuffer({
    size: Math.max(16, Math.ceil(bytes / 16) * 16),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  if (typeof data !== "number") device.queue.writeBuffer(buf, 0, data);
  return buf;
}

/** The 16-byte params uniform {seed: u32, p: f32}. */
export function paramsBuffer(device: GPUDevice, seed: number, p: number): GPUBuffer {
  const buf = device.createBuffer({
    size: ATTENTION_PARAMS_BYTES,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(buf, 0, attentionParams(seed, p));
  return buf;
}

/** Copy `floats` f32 values of `src` into a MAP_READ buffer and read them back. */
export async function readBack(
  device: GPUDevice,
  src: GPUBuffer,
  floats: number,
): Promise<Float32Array<ArrayBuffer>> {
  const bytes = Math.ceil((floats * 4) / 4) * 4;
  const dst = device.createBuffer({
    size: Math.max(16, Math.ceil(bytes / 16) * 16),
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(src, 0, dst, 0, Math.min(src.size, dst.size));
  device.queue.submit([enc.finish()]);
  await dst.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(dst.getMappedRange().slice(0, floats * 4));
  dst.unmap();
  dst.destroy();
  return out;
}
