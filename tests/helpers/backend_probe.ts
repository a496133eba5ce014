/**
 * Child process of tests/engine_backend_test.ts: opens the GPU as every command does and prints
 * one JSON line: the backend variables afterwards, whether glvnd's libEGL got loaded (the library
 * whose exit-time teardown races a test thread's exit, see kernels/core/backend.ts), the adapter
 * (null when there is none, with the error).
 */
import { initRuntime } from "../../kernels/core/runtime.ts";
import { GpuUnavailableError } from "../../kernels/core/device.ts";
import { BACKEND_AUTO_ENV, BACKEND_ENV } from "../../kernels/core/backend.ts";

// No adapter (drivers hidden, none installed) still reports what was chosen.
let error: string | null = null;
const rt = await initRuntime().catch((e) => {
  if (!(e instanceof GpuUnavailableError)) throw e;
  error = e.message;
  return null;
});
const maps = Deno.readTextFileSync("/proc/self/maps");
console.log(JSON.stringify({
  backend: Deno.env.get(BACKEND_ENV) ?? null,
  auto: Deno.env.get(BACKEND_AUTO_ENV) ?? null,
  libEGL: /\/libEGL\.so/.test(maps),
  cpuGl: rt?.ctx.adapterInfo.cpuGl ?? null,
  adapter: rt?.ctx.adapterInfo.description ?? null,
  error,
}));
