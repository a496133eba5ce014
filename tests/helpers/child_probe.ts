/**
 * Runs an adapter probe script (tests/helpers/*_probe.ts) in a child Deno, so that it requests
 * its own adapter under the environment a test chooses: this process's environment without
 * `drop` and without the adapter-choice variables (JOWA_ALLOW_GL and the WebGPU backend choice,
 * kernels/core/backend.ts), plus `env`. The probe prints one JSON line first.
 */
import { BACKEND_AUTO_ENV, BACKEND_ENV } from "../../kernels/core/backend.ts";

/** What a probe child did: exit code, its first stdout line parsed, its stderr. */
export interface ProbeResult {
  code: number;
  // deno-lint-ignore no-explicit-any
  info: any;
  stderr: string;
}

/** Run `script` in a child process (see the module doc for its environment). */
export async function runProbe(
  script: string,
  env: Record<string, string>,
  drop: string[] = [],
): Promise<ProbeResult> {
  const chosen = new Set(["JOWA_ALLOW_GL", BACKEND_ENV, BACKEND_AUTO_ENV, ...drop]);
  const base = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) => !chosen.has(k)),
  );
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-webgpu", script],
    clearEnv: true,
    env: { ...base, ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  const stdout = dec.decode(r.stdout).trim();
  const stderr = dec.decode(r.stderr);
  let info = null;
  try {
    info = JSON.parse(stdout.split("\n")[0]);
  } catch {
    // a probe that failed before printing: the caller's assertion on `code` shows stderr
  }
  return { code: r.code, info, stderr };
}
