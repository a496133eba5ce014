/**
 * The WebGPU device: one per process, high-performance adapter, the adapter's own limits.
 *
 * Deno grants the spec's default limits unless asked, which caps storage bindings at 128 MiB
 * and workgroup memory at 16 KiB; we request what the adapter offers.
 *
 * @module
 */

/** Limits we request at the adapter's own values (the rest keep their defaults). */
const REQUESTED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxBindingsPerBindGroup",
  "maxUniformBufferBindingSize",
] as const;

/** What the rest of the engine needs to know about the device it runs on. */
export interface GpuContext {
  device: GPUDevice;
  adapterInfo: { description: string; vendor: string; architecture: string; fallback: boolean };
  hasF16: boolean;
  /** Whether "timestamp-query" was enabled (GPU-side timing in benchmarks). */
  hasTimestamps: boolean;
  limits: Record<(typeof REQUESTED_LIMITS)[number], number>;
  /** Set once the device is lost; every later operation throws with this reason. */
  lostReason: string | null;
}

/** Thrown when no WebGPU adapter exists or the device cannot be created. */
export class GpuUnavailableError extends Error {
  override name = "GpuUnavailableError";
}

const INSTALL_HINT = 'No WebGPU adapter found. Deno needs `"unstable": ["webgpu"]` (or ' +
  "--unstable-webgpu) and a Vulkan, Metal or D3D12 driver. On a Linux machine without a GPU " +
  "install Mesa's CPU driver: `sudo apt-get install mesa-vulkan-drivers`.";

let current: Promise<GpuContext> | null = null;

/** The shared GPU context, created on first use. */
export function gpu(): Promise<GpuContext> {
  current ??= createContext().catch((e) => {
    current = null;
    throw e;
  });
  return current;
}

async function createContext(): Promise<GpuContext> {
  if (typeof navigator === "undefined" || !("gpu" in navigator) || !navigator.gpu) {
    throw new GpuUnavailableError(INSTALL_HINT);
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new GpuUnavailableError(INSTALL_HINT);
  const requiredLimits: Record<string, number> = {};
  for (const name of REQUESTED_LIMITS) {
    const value = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof value === "number") requiredLimits[name] = value;
  }
  const hasF16 = adapter.features.has("shader-f16");
  const hasTimestamps = adapter.features.has("timestamp-query");
  const requiredFeatures: GPUFeatureName[] = [];
  if (hasF16) requiredFeatures.push("shader-f16");
  // Benchmarks time kernels with timestamp queries when the adapter offers them.
  if (hasTimestamps) requiredFeatures.push("timestamp-query");
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  } catch (e) {
    throw new GpuUnavailableError(`WebGPU device creation failed: ${(e as Error).message}`);
  }
  const info = adapter.info;
  const ctx: GpuContext = {
    device,
    adapterInfo: {
      description: info.description || info.device || "unknown adapter",
      vendor: info.vendor,
      architecture: info.architecture,
      fallback: (info as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false,
    },
    hasF16,
    hasTimestamps,
    limits: requiredLimits as GpuContext["limits"],
    lostReason: null,
  };
  device.lost.then((lost) => {
    ctx.lostReason = `${lost.reason}: ${lost.message}`;
    if (lost.reason !== "destroyed") console.error(`WebGPU device lost (${ctx.lostReason})`);
  });
  device.addEventListener("uncapturederror", (ev) => {
    console.error(`WebGPU uncaptured error: ${(ev as GPUUncapturedErrorEvent).error.message}`);
  });
  return ctx;
}

/** A one-line description of the adapter, for benchmark and log headers. */
export function describeAdapter(ctx: GpuContext): string {
  const kind = ctx.adapterInfo.fallback ? " (CPU fallback)" : "";
  return `${ctx.adapterInfo.description}${kind}, f16 ${ctx.hasF16 ? "yes" : "no"}, ` +
    `max storage binding ${(ctx.limits.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB`;
}
