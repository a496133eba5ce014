/**
 * Child process of tests/reliability_adapter_test.ts: opens the GPU as every command does and
 * prints one JSON line (adapter kind, XDG_RUNTIME_DIR afterwards), or the refusal of
 * `requireUsableAdapter` as the CLIs print it (one line, exit status 1).
 */
import { initRuntime } from "../../kernels/core/runtime.ts";
import {
  describeAdapter,
  GpuUnavailableError,
  requireUsableAdapter,
} from "../../kernels/core/device.ts";

const rt = await initRuntime();
const out = {
  cpuGl: rt.ctx.adapterInfo.cpuGl,
  adapter: describeAdapter(rt.ctx),
  xdg: Deno.env.get("XDG_RUNTIME_DIR") ?? null,
};
console.log(JSON.stringify(out));
try {
  requireUsableAdapter(rt.ctx);
} catch (e) {
  if (!(e instanceof GpuUnavailableError)) throw e;
  console.error(`error: ${e.message}`);
  Deno.exit(1);
}
