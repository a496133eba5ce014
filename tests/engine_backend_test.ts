/**
 * kernels/core/backend.ts: on Linux with a Vulkan driver wgpu is restricted to Vulkan, so glvnd's
 * libEGL is never loaded (its exit-time teardown raced a `deno test` thread's exit: "double free
 * or corruption", exit 134, after all tests passed). A user's DENO_WEBGPU_BACKEND is kept; a
 * child that inherits our choice decides again (hidden Vulkan drivers still fall back to GL).
 */
import assert from "node:assert/strict";
import { runProbe } from "./helpers/child_probe.ts";
import {
  BACKEND_AUTO_ENV,
  BACKEND_ENV,
  backendDecision,
  hasVulkanDriver,
} from "../kernels/core/backend.ts";

const PROBE = new URL("./helpers/backend_probe.ts", import.meta.url).pathname;
const NO_VULKAN = { VK_ICD_FILENAMES: "/nonexistent.json", VK_DRIVER_FILES: "/nonexistent.json" };
const OURS = { [BACKEND_ENV]: "vulkan", [BACKEND_AUTO_ENV]: "1" };
/** Where distributions put glvnd's libEGL (the assertion that needs it is skipped elsewhere). */
const EGL_LIBS = ["x86_64-linux-gnu/", "aarch64-linux-gnu/", "", "64/"]
  .map((d) => (d === "64/" ? "/usr/lib64/" : `/usr/lib/${d}`) + "libEGL.so.1");

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

Deno.test("backendDecision: Vulkan only on Linux with a driver; the user's choice kept; ours redecided", () => {
  const yes = () => true, no = () => false;
  assert.equal(backendDecision({}, "linux", yes), "vulkan");
  assert.equal(backendDecision({}, "linux", no), "keep");
  assert.equal(backendDecision({}, "darwin", yes), "keep");
  assert.equal(backendDecision({}, "windows", yes), "keep");
  assert.equal(backendDecision({ JOWA_ALLOW_GL: "1" }, "linux", yes), "keep");
  // The user's own choice, whatever it is.
  assert.equal(backendDecision({ [BACKEND_ENV]: "vulkan,gl" }, "linux", yes), "keep");
  assert.equal(backendDecision({ [BACKEND_ENV]: "gl" }, "linux", yes), "keep");
  // Ours, inherited by a child: kept where it still holds, removed where it does not.
  assert.equal(backendDecision(OURS, "linux", yes), "keep");
  assert.equal(backendDecision(OURS, "linux", no), "clear");
  assert.equal(backendDecision({ ...OURS, JOWA_ALLOW_GL: "1" }, "linux", yes), "clear");
  assert.equal(backendDecision({ ...OURS, [BACKEND_ENV]: "gl" }, "linux", yes), "vulkan");
});

Deno.test("hasVulkanDriver: the loader's explicit lists replace the search; files and folders", () => {
  const dir = Deno.makeTempDirSync({ prefix: "jowa-icd-" });
  try {
    const empty = `${dir}/empty`, icd = `${dir}/icd.d`;
    Deno.mkdirSync(empty);
    Deno.mkdirSync(icd);
    Deno.writeTextFileSync(`${icd}/lvp_icd.x86_64.json`, "{}");
    Deno.writeTextFileSync(`${dir}/notes.txt`, "");
    assert.equal(hasVulkanDriver({ VK_DRIVER_FILES: "/nonexistent.json" }), false);
    assert.equal(hasVulkanDriver({ VK_DRIVER_FILES: empty }), false);
    assert.equal(hasVulkanDriver({ VK_DRIVER_FILES: `${dir}/notes.txt` }), false);
    assert.equal(hasVulkanDriver({ VK_DRIVER_FILES: icd }), true);
    assert.equal(hasVulkanDriver({ VK_DRIVER_FILES: `${empty}:${icd}/lvp_icd.x86_64.json` }), true);
    assert.equal(hasVulkanDriver({ VK_ICD_FILENAMES: icd }), true); // the older name
    // VK_DRIVER_FILES wins over the older name.
    assert.equal(hasVulkanDriver({ VK_DRIVER_FILES: empty, VK_ICD_FILENAMES: icd }), false);
    // The search: XDG data folders, plus VK_ADD_DRIVER_FILES.
    const share = `${dir}/share`;
    Deno.mkdirSync(`${share}/vulkan/icd.d`, { recursive: true });
    const bare = { HOME: empty, XDG_CONFIG_DIRS: empty, XDG_DATA_DIRS: empty };
    // /etc and /usr/local/etc are always searched: only assert when this machine has none there.
    const system = ["/etc/vulkan/icd.d", "/usr/local/etc/vulkan/icd.d"]
      .some((d) => hasVulkanDriver({ VK_DRIVER_FILES: d }));
    if (!system) assert.equal(hasVulkanDriver(bare), false);
    Deno.writeTextFileSync(`${share}/vulkan/icd.d/x.json`, "{}");
    assert.equal(hasVulkanDriver({ ...bare, XDG_DATA_DIRS: `${empty}:${share}` }), true);
    assert.equal(hasVulkanDriver({ ...bare, VK_ADD_DRIVER_FILES: icd }), true);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

async function probe(env: Record<string, string>) {
  const r = await runProbe(PROBE, env);
  assert.equal(r.code, 0, r.stderr);
  return r.info;
}

Deno.test({
  name: "the adapter is requested with Vulkan only: libEGL never loads; a user's choice loads it",
  ignore: Deno.build.os !== "linux" || !hasVulkanDriver(Deno.env.toObject()),
  fn: async () => {
    const auto = await probe({});
    assert.equal(auto.backend, "vulkan");
    assert.equal(auto.auto, "1");
    assert.equal(auto.libEGL, false, `libEGL loaded with Vulkan only (${auto.adapter})`);
    assert.equal(auto.cpuGl, false);
    // The probe sees libEGL when wgpu may use OpenGL (the user's choice, kept as given).
    const all = await probe({ [BACKEND_ENV]: "vulkan,gl" });
    assert.equal(all.backend, "vulkan,gl");
    assert.equal(all.auto, null);
    if (EGL_LIBS.some((p) => exists(p))) {
      assert.equal(all.libEGL, true, "libEGL not seen with OpenGL on: the probe proves nothing");
    }
    // A child that inherits our choice but hides the Vulkan drivers gets every backend back.
    const hidden = await probe({ ...OURS, ...NO_VULKAN });
    assert.equal(hidden.backend, null);
    assert.equal(hidden.auto, null);
    // A manifest whose driver cannot load: Vulkan only finds nothing, and says what to set.
    const dir = Deno.makeTempDirSync({ prefix: "jowa-icd-" });
    try {
      const icd = { file_format_version: "1.0.0", ICD: { library_path: `${dir}/none.so` } };
      Deno.writeTextFileSync(`${dir}/broken.json`, JSON.stringify(icd));
      const files = `${dir}/broken.json`;
      const broken = await probe({ VK_DRIVER_FILES: files, VK_ICD_FILENAMES: files });
      assert.equal(broken.backend, "vulkan");
      assert.equal(broken.adapter, null);
      assert.match(broken.error, /Vulkan found no device.*JOWA_ALLOW_GL=1/);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
