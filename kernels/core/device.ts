/**
 * The WebGPU device: one per process, high-performance adapter, the adapter's own limits.
 *
 * Deno grants the spec's default limits unless asked, which caps storage bindings at 128 MiB
 * and workgroup memory at 16 KiB; we request what the adapter offers.
 *
 * Two Linux pitfalls are handled here. Without a Vulkan driver wgpu falls back to OpenGL on
 * Mesa's llvmpipe, a CPU rasterizer far too slow for training: {@link isCpuGlFallback} tells
 * it apart and {@link requireUsableAdapter} refuses it (commands call it; `JOWA_ALLOW_GL=1`
 * runs anyway). And Mesa prints "XDG_RUNTIME_DIR is invalid" on every start when that
 * variable is unset: a private runtime directory is set before the adapter is requested.
 * Where a Vulkan driver is installed, wgpu is asked for Vulkan only (`backend.ts`: its OpenGL
 * probe loads libEGL, whose exit-time teardown made test processes abort after passing).
 *
 * @module
 */
import { preferVulkan } from "./backend.ts";

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
  adapterInfo: {
    description: string;
    vendor: string;
    architecture: string;
    fallback: boolean;
    /** OpenGL on a CPU rasterizer (see {@link isCpuGlFallback}). */
    cpuGl: boolean;
  };
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

/** Environment variable that lets commands run on an OpenGL CPU adapter anyway. */
export const ALLOW_GL_ENV = "JOWA_ALLOW_GL";

/** The one line commands refuse an OpenGL CPU adapter with. */
export const CPU_GL_MESSAGE = "WebGPU found only OpenGL on the CPU (Mesa llvmpipe), far too " +
  "slow to train or evaluate: install the Vulkan CPU driver lavapipe with " +
  "`sudo apt-get install mesa-vulkan-drivers` (or set JOWA_ALLOW_GL=1 to run anyway)";

/** What {@link isCpuGlFallback} reads: Deno's GPUAdapterInfo. */
export interface AdapterInfoLike {
  description?: string;
  isFallbackAdapter?: boolean;
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
}

/**
 * Whether an adapter is wgpu's OpenGL backend on a CPU rasterizer, what wgpu picks on Linux
 * when no Vulkan driver is installed. Deno's GPUAdapterInfo names no backend, but the GL
 * backend cannot query subgroup sizes and reports wgpu's placeholders 4..128, which no Vulkan,
 * Metal or D3D12 driver reports (they give the device's own, e.g. 8..8 on lavapipe, 32..32 on
 * NVIDIA); wgpu marks llvmpipe, softpipe and swrast adapters as CPU ("fallback") adapters.
 */
export function isCpuGlFallback(info: AdapterInfoLike): boolean {
  const cpu = info.isFallbackAdapter === true ||
    /llvmpipe|softpipe|swrast/i.test(info.description ?? "");
  return cpu && info.subgroupMinSize === 4 && info.subgroupMaxSize === 128;
}

/**
 * Refuse an OpenGL CPU adapter (one-line GpuUnavailableError saying what to install) unless
 * JOWA_ALLOW_GL=1. Commands that train or evaluate call it; the library itself runs anywhere.
 */
export function requireUsableAdapter(ctx: GpuContext): void {
  if (ctx.adapterInfo.cpuGl && Deno.env.get(ALLOW_GL_ENV) !== "1") {
    throw new GpuUnavailableError(CPU_GL_MESSAGE);
  }
}

/**
 * Give Mesa a valid XDG_RUNTIME_DIR when it has none, so its Wayland probe stays quiet: a
 * private 0700 directory per user under the temp directory (created once, reused).
 */
export function ensureRuntimeDir(): void {
  if (Deno.build.os === "windows") return;
  const current = Deno.env.get("XDG_RUNTIME_DIR");
  if (current && isPrivateDir(current)) return;
  const tmp = Deno.env.get("TMPDIR") || "/tmp";
  let dir = `${tmp}/jowa-runtime-${Deno.uid() ?? "user"}`;
  try {
    Deno.mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) return; // leave the environment alone
  }
  if (!isPrivateDir(dir)) dir = Deno.makeTempDirSync({ prefix: "jowa-runtime-" }); // 0700
  Deno.env.set("XDG_RUNTIME_DIR", dir);
}

/** A real directory (not a link) owned by this user and closed to others. */
function isPrivateDir(dir: string): boolean {
  try {
    const st = Deno.lstatSync(dir);
    return st.isDirectory && st.uid === Deno.uid() && ((st.mode ?? 0) & 0o077) === 0;
  } catch {
    return false;
  }
}

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
  ensureRuntimeDir(); // before Mesa reads it (adapter enumeration)
  const vulkanOnly = preferVulkan(); // before Deno creates this runtime's wgpu instance
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    throw new GpuUnavailableError(
      vulkanOnly
        ? "No WebGPU adapter found: a Vulkan driver manifest is installed but Vulkan found no " +
          "device (wgpu was asked for Vulkan only; JOWA_ALLOW_GL=1 or DENO_WEBGPU_BACKEND=" +
          "vulkan,gl lets it try OpenGL too)"
        : INSTALL_HINT,
    );
  }
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
      cpuGl: isCpuGlFallback(info as unknown as AdapterInfoLike),
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
  const kind = ctx.adapterInfo.cpuGl
    ? " (OpenGL on the CPU: install mesa-vulkan-drivers)"
    : ctx.adapterInfo.fallback
    ? " (CPU fallback)"
    : "";
  return `${ctx.adapterInfo.description}${kind}, f16 ${ctx.hasF16 ? "yes" : "no"}, ` +
    `max storage binding ${(ctx.limits.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB`;
}
