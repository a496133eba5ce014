/**
 * Task ids for evaluation. Held-out games reuse the task embedding of a similar pretraining
 * game when fine-tuned (jowa.md, "Details of the public code"); `--task-proxy` follows that.
 *
 * @module
 */
import { taskIdOf } from "./task_ids.ts";

/** Held-out game -> the pretraining game whose task embedding it reuses. */
export const TASK_PROXIES: Readonly<Record<string, string>> = Object.freeze({
  Robotank: "Phoenix",
  YarsRevenge: "ChopperCommand",
  Gravitar: "TimePilot",
  MsPacman: "Berzerk",
});

/** Task id of `game` (canonical name), through its proxy when `proxy` is set. */
export function evalTaskId(game: string, proxy: boolean): number {
  return taskIdOf(proxy ? TASK_PROXIES[game] ?? game : game);
}
