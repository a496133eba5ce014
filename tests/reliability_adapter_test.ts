/**
 * The adapter guard of kernels/core/device.ts. Without a Vulkan driver wgpu falls back to
 * OpenGL on Mesa's llvmpipe, on which training makes no visible progress: commands refuse it
 * in one line saying to install mesa-vulkan-drivers, unless JOWA_ALLOW_GL=1. The fallback is
 * reproduced by hiding the Vulkan drivers from the loader (VK_ICD_FILENAMES/VK_DRIVER_FILES).
 * And Mesa's "XDG_RUNTIME_DIR is invalid" warning never shows: a private runtime directory is
 * set before the adapter is requested.
 */
import assert from "node:assert/strict";
import { runProbe } from "./helpers/child_probe.ts";
import { CPU_GL_MESSAGE, isCpuGlFallback } from "../kernels/core/device.ts";

const PROBE = new URL("./helpers/adapter_probe.ts", import.meta.url).pathname;
const NO_VULKAN = { VK_ICD_FILENAMES: "/nonexistent.json", VK_DRIVER_FILES: "/nonexistent.json" };

function probe(env: Record<string, string>, drop: string[] = []) {
  return runProbe(PROBE, env, drop);
}

Deno.test("isCpuGlFallback: GL's placeholder subgroup sizes on a CPU adapter, nothing else", () => {
  // As Deno 2.9.6 reports them: wgpu's GL backend on llvmpipe, and lavapipe (Vulkan).
  const llvmpipe = "llvmpipe (LLVM 15.0.6, 256 bits)";
  const gl = {
    description: llvmpipe,
    isFallbackAdapter: true,
    subgroupMinSize: 4,
    subgroupMaxSize: 128,
  };
  assert.equal(isCpuGlFallback(gl), true);
  assert.equal(isCpuGlFallback({ ...gl, subgroupMinSize: 8, subgroupMaxSize: 8 }), false); // lavapipe
  assert.equal(
    isCpuGlFallback({
      description: "NVIDIA H100",
      isFallbackAdapter: false,
      subgroupMinSize: 32,
      subgroupMaxSize: 32,
    }),
    false,
  );
  // A hardware GL driver (not a CPU): slow paths are not ours to refuse.
  assert.equal(
    isCpuGlFallback({ ...gl, description: "Mesa Intel(R) UHD", isFallbackAdapter: false }),
    false,
  );
});

Deno.test("OpenGL CPU fallback: refused in one line naming mesa-vulkan-drivers; JOWA_ALLOW_GL=1 runs", async () => {
  const forced = await probe(NO_VULKAN);
  if (!forced.info.cpuGl) {
    // This machine's GL driver is not a CPU rasterizer: nothing to refuse.
    assert.equal(forced.code, 0, forced.stderr);
    return;
  }
  assert.equal(forced.code, 1);
  const lines = forced.stderr.trim().split("\n");
  assert.deepEqual(lines, [`error: ${CPU_GL_MESSAGE}`]);
  assert.match(lines[0], /sudo apt-get install mesa-vulkan-drivers/);
  assert.match(forced.info.adapter, /OpenGL on the CPU/);
  const allowed = await probe({ ...NO_VULKAN, JOWA_ALLOW_GL: "1" });
  assert.equal(allowed.code, 0, allowed.stderr);
  assert.equal(allowed.info.cpuGl, true);
  // The default adapter (lavapipe or a GPU where Vulkan is installed) is never refused.
  const normal = await probe({});
  if (!normal.info.cpuGl) assert.equal(normal.code, 0, normal.stderr);
});

Deno.test("no 'XDG_RUNTIME_DIR is invalid' warning: a private runtime dir is set first", async () => {
  const r = await probe({}, ["XDG_RUNTIME_DIR"]);
  assert.doesNotMatch(r.stderr, /XDG_RUNTIME_DIR/);
  if (Deno.build.os === "windows") return;
  const dir = r.info.xdg as string;
  assert.ok(dir, "XDG_RUNTIME_DIR was set");
  const st = Deno.lstatSync(dir);
  assert.ok(st.isDirectory);
  assert.equal(st.uid, Deno.uid());
  assert.equal(st.mode! & 0o777, 0o700);
  // A valid one given by the user is kept.
  const mine = Deno.makeTempDirSync({ prefix: "jowa-xdg-test-" });
  try {
    const kept = await probe({ XDG_RUNTIME_DIR: mine });
    assert.equal(kept.info.xdg, mine);
  } finally {
    Deno.removeSync(mine, { recursive: true });
  }
});
