/**
 * The test command: runs `deno test -A` over tests/ (or the given files), streams its output,
 * and ends with the plain line `N passed, N failed` that CI reads.
 *
 *   deno task test [files...] [-- extra deno test flags]
 */
import { BACKEND_AUTO_ENV, BACKEND_ENV, backendDecision } from "../kernels/core/backend.ts";

const args = Deno.args.length ? Deno.args : ["tests/"];
// Vulkan only where a Vulkan driver is installed (kernels/core/backend.ts: no libEGL, whose
// exit-time teardown aborted passing runs), chosen once here so that no test thread has to
// write the environment while others read it.
const backend: Record<string, string> = backendDecision(Deno.env.toObject()) === "vulkan"
  ? { [BACKEND_ENV]: "vulkan", [BACKEND_AUTO_ENV]: "1" }
  : {};
const child = new Deno.Command(Deno.execPath(), {
  args: ["test", "-A", ...args],
  stdout: "piped",
  stderr: "inherit",
  env: { NO_COLOR: "1", ...backend },
}).spawn();

let tail = "";
const decoder = new TextDecoder();
for await (const chunk of child.stdout) {
  await Deno.stdout.write(chunk);
  tail = (tail + decoder.decode(chunk, { stream: true })).slice(-4096);
}
const { code } = await child.status;
// Deno's summary: "ok | 12 passed (3 steps) | 0 failed (1s)" or "FAILED | 3 passed | 1 failed".
const m = tail.match(/(\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/g);
if (m) {
  const last = m[m.length - 1].match(/(\d+) passed.*\| (\d+) failed/)!;
  console.log(`${last[1]} passed, ${last[2]} failed`);
} else {
  console.log(`0 passed, 1 failed`);
  console.error("test runner: could not find deno test's summary (did it crash?)");
}
Deno.exit(code === 0 && m ? 0 : code || 1);
