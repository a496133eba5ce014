/**
 * Atari environments for JOWA: the ALE bridge (Python ale-py subprocesses), the paper's
 * evaluation preprocessing, vectorized stepping and data collection.
 *
 * ```ts
 * await using env = await AtariVectorEnv.create({ game: "Pong", numEnvs: 16, numProcesses: 2 });
 * let { obs } = await env.reset([...Array(16).keys()]);
 * const s = await env.step(new Array(16).fill(0)); // full action ids 0..17
 * ```
 * @module
 */
export {
  AtariVectorEnv,
  type EnvDescription,
  type FinishedEpisode,
  type ResetResult,
  type StepResult,
  type VectorEnvOptions,
} from "./vector_env.ts";
export {
  PAPER_PREPROCESS,
  type PreprocessConfig,
  type PreprocessOptions,
  resolvePreprocess,
} from "./preprocess_config.ts";
export {
  ACTION_NAMES,
  camelToRom,
  type GameInfo,
  gameName,
  GAMES,
  minimalToFull,
  NUM_FULL_ACTIONS,
  romId,
  validActionMask,
} from "../atari/mod.ts";
export {
  ALE_PY_VERSION,
  ensurePython,
  EnvError,
  PYTHON_REQUIREMENTS,
  type PythonOptions,
} from "./python_env.ts";
export { BridgeError } from "./bridge_process.ts";
export {
  epsilonGreedy,
  mulberry32,
  type PolicyFn,
  type PolicyInput,
  randomValidAction,
  uniformPolicy,
} from "./policies.ts";
export { StepProgress } from "../util/progress.ts";
