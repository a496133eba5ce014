/**
 * Finds a Python interpreter with the pinned bridge packages, creating a project-local
 * virtual environment on first use when the default interpreter lacks them.
 * @module
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The pip requirements the bridge needs (ale-py's wheel bundles the ROMs). */
export const PYTHON_REQUIREMENTS = ["ale-py==0.12.1", "numpy", "msgpack"];
/** The ale-py version the bridge is pinned to. */
export const ALE_PY_VERSION = "0.12.1";

/** A user-facing setup or input error: callers print its message without a stack trace. */
export class EnvError extends Error {
  /** Creates an error whose message is meant for the user as is. */
  constructor(message: string) {
    super(message);
    this.name = "EnvError";
  }
}

/** Options for {@link ensurePython}. */
export interface PythonOptions {
  /**
   * Interpreter to use; default env JOWA_PYTHON, else `.venv/bin/python` or `python3`.
   * `null` ignores JOWA_PYTHON.
   */
  python?: string | null;
  /** Directory for the virtual environment created on first use (default: repo `.venv`). */
  venvDir?: string;
  /** Allow creating the venv and running pip (default true). */
  install?: boolean;
  /** Base interpreter probed last and used to create the venv (default `python3`). */
  basePython?: string;
}

const cache = new Map<string, string>();

/** Repository root when this module is a local file, else the working directory. */
export function projectRoot(): string {
  const url = new URL("..", import.meta.url);
  return url.protocol === "file:" ? fileURLToPath(url) : Deno.cwd();
}

async function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    const dec = new TextDecoder();
    return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { code: -1, out: `${cmd}: not found` };
    throw e;
  }
}

const PROBE = "import ale_py, numpy, msgpack; print(ale_py.__version__)";

/** True when `python` runs and imports the pinned packages. */
export async function hasBridgePackages(python: string): Promise<boolean> {
  const r = await run(python, ["-c", PROBE]);
  return r.code === 0 && r.out.trim().split("\n").pop() === ALE_PY_VERSION;
}

/**
 * Returns the path of an interpreter that can run the bridge.
 *
 * Order: `opts.python`, env JOWA_PYTHON (used as is, never installed into), an existing
 * project `.venv`, `python3`; when none has the packages, creates `.venv` with `python3`
 * (`opts.basePython`) and pip-installs {@link PYTHON_REQUIREMENTS}. Throws {@link EnvError} with one clear
 * message when there is no python3 or the install fails.
 */
export async function ensurePython(opts: PythonOptions = {}): Promise<string> {
  const named = opts.python === null ? undefined : (opts.python ?? Deno.env.get("JOWA_PYTHON"));
  const venv = opts.venvDir ?? join(projectRoot(), ".venv");
  const base = opts.basePython ?? "python3";
  const key = `${named}|${venv}|${base}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const found = await locate(named, venv, base, opts.install ?? true);
  cache.set(key, found);
  return found;
}

async function locate(
  named: string | undefined,
  venv: string,
  base: string,
  install: boolean,
): Promise<string> {
  if (named) {
    if (await hasBridgePackages(named)) return named;
    const r = await run(named, ["--version"]);
    if (r.code === -1) throw new EnvError(`Python interpreter '${named}' was not found`);
    throw new EnvError(
      `Python '${named}' lacks the bridge packages; run: ${named} -m pip install ` +
        PYTHON_REQUIREMENTS.join(" "),
    );
  }
  const venvPython = join(venv, "bin", "python");
  if (existsSync(venvPython) && await hasBridgePackages(venvPython)) return venvPython;
  const sys = await run(base, ["--version"]);
  if (sys.code === -1) {
    throw new EnvError(`${base} was not found; install Python 3 or set JOWA_PYTHON`);
  }
  if (await hasBridgePackages(base)) return base;
  if (!install) throw new EnvError(`no Python with ${PYTHON_REQUIREMENTS.join(", ")} found`);
  console.error(`Setting up ${venv} with ${PYTHON_REQUIREMENTS.join(" ")} (first use)...`);
  if (!existsSync(venvPython)) {
    const mk = await run(base, ["-m", "venv", venv]);
    if (mk.code !== 0) throw new EnvError(`creating ${venv} failed:\n${tail(mk.out)}`);
  }
  const pip = await run(venvPython, ["-m", "pip", "install", "-q", ...PYTHON_REQUIREMENTS]);
  if (pip.code !== 0) throw new EnvError(`pip install into ${venv} failed:\n${tail(pip.out)}`);
  if (!(await hasBridgePackages(venvPython))) {
    throw new EnvError(`${venv} still lacks ale-py ${ALE_PY_VERSION} after installing`);
  }
  return venvPython;
}

function tail(s: string, lines = 15): string {
  return s.trimEnd().split("\n").slice(-lines).join("\n");
}
