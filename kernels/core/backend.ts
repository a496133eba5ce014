/**
 * Which wgpu backends Deno may use: Vulkan only on Linux when a Vulkan driver is installed.
 *
 * Why: with every backend enabled (Deno's default) wgpu also initializes OpenGL, which loads
 * glvnd's libEGL and gives the thread that requested the adapter EGL state freed by a
 * pthread-key destructor when that thread exits. `deno test` runs each test file on a thread of
 * its own (several at once with `--parallel`); when one is still exiting while the process
 * exits, libEGL's exit-time teardown frees the same state first and glibc aborts with "double
 * free or corruption" (exit 134) after every test passed. Without the OpenGL backend libEGL is
 * never loaded. The adapter is the one wgpu chose before wherever Vulkan's is at least as good
 * as OpenGL's (lavapipe here, GPU drivers); only a GL-only GPU beside lavapipe would change.
 *
 * Deno reads `DENO_WEBGPU_BACKEND` when a runtime first requests an adapter, so it is set in
 * the environment just before ({@link preferVulkan}); child processes inherit it, marked as
 * ours so that they decide again (a child that hides the Vulkan drivers still falls back).
 *
 * @module
 */
import { ALLOW_GL_ENV } from "./device.ts"; // a cycle, but only read inside functions

/** Deno's backend selection (a comma list: vulkan, gl, metal, dx12). */
export const BACKEND_ENV = "DENO_WEBGPU_BACKEND";

/** Set to "1" beside {@link BACKEND_ENV} when we chose it, so it is not taken as the user's. */
export const BACKEND_AUTO_ENV = "JOWA_WEBGPU_BACKEND_AUTO";

/** The environment variables {@link backendDecision} reads (a plain object, for tests). */
export type EnvLike = Record<string, string | undefined>;

/**
 * What to do with {@link BACKEND_ENV}: "vulkan" (set it, marked), "clear" (remove our earlier
 * choice: every backend), or "keep" (the user's choice, or nothing to change).
 */
export function backendDecision(
  env: EnvLike,
  os: string = Deno.build.os,
  hasDriver: (env: EnvLike) => boolean = hasVulkanDriver,
): "vulkan" | "clear" | "keep" {
  const ours = env[BACKEND_AUTO_ENV] === "1";
  if (env[BACKEND_ENV] !== undefined && !ours) return "keep"; // the user's choice
  // JOWA_ALLOW_GL=1 asks for the OpenGL fallback: wgpu must be free to find it.
  const want = os === "linux" && env[ALLOW_GL_ENV] !== "1" && hasDriver(env);
  if (want) return ours && env[BACKEND_ENV] === "vulkan" ? "keep" : "vulkan";
  return ours ? "clear" : "keep";
}

/**
 * Apply {@link backendDecision} to this process's environment (before the adapter is first
 * requested). Returns whether wgpu is now restricted to Vulkan by us.
 */
export function preferVulkan(): boolean {
  let env: EnvLike;
  try {
    env = Deno.env.toObject();
  } catch {
    return false; // no --allow-env: leave Deno's default
  }
  const decision = backendDecision(env);
  // Only written when it changes: another test worker may be reading the environment.
  if (decision === "vulkan") {
    Deno.env.set(BACKEND_ENV, "vulkan");
    Deno.env.set(BACKEND_AUTO_ENV, "1");
  } else if (decision === "clear") {
    Deno.env.delete(BACKEND_ENV);
    Deno.env.delete(BACKEND_AUTO_ENV);
  }
  return Deno.env.get(BACKEND_AUTO_ENV) === "1" && Deno.env.get(BACKEND_ENV) === "vulkan";
}

/**
 * Whether the Vulkan loader would find a driver manifest (an ICD `.json`), searched as the
 * loader does on Linux: `VK_DRIVER_FILES` (or the older `VK_ICD_FILENAMES`) replaces the search
 * with its colon-separated files and folders; otherwise the XDG config and data folders,
 * `/etc` and `/usr/local/etc`, plus `VK_ADD_DRIVER_FILES`. A manifest does not prove a device.
 */
export function hasVulkanDriver(env: EnvLike): boolean {
  const list = (v: string | undefined) => (v ?? "").split(":").filter((p) => p !== "");
  const explicit = env.VK_DRIVER_FILES ?? env.VK_ICD_FILENAMES;
  if (explicit !== undefined) return list(explicit).some(hasManifest);
  const home = env.HOME ?? "";
  const config = [
    env.XDG_CONFIG_HOME || `${home}/.config`,
    ...list(env.XDG_CONFIG_DIRS || "/etc/xdg"),
    "/usr/local/etc",
    "/etc",
  ];
  const data = [
    env.XDG_DATA_HOME || `${home}/.local/share`,
    ...list(env.XDG_DATA_DIRS || "/usr/local/share:/usr/share"),
  ];
  const dirs = [...config, ...data].map((d) => `${d}/vulkan/icd.d`);
  return [...list(env.VK_ADD_DRIVER_FILES), ...dirs].some(hasManifest);
}

/** A `.json` file, or a folder holding one. */
function hasManifest(path: string): boolean {
  try {
    const st = Deno.statSync(path);
    if (st.isFile) return path.endsWith(".json");
    if (!st.isDirectory) return false;
    for (const e of Deno.readDirSync(path)) {
      if (e.name.endsWith(".json") && !e.isDirectory) return true;
    }
  } catch {
    // missing or unreadable: not a driver
  }
  return false;
}
