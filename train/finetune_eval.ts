/**
 * Periodic evaluation during fine-tuning: N episodes of the real game with planning (the
 * eval/ agent and episode runner, the paper's protocol), written as `deno task eval` writes
 * its results (results.json, results.md with the DQN-normalized score) under
 * `<run>/evals/step-XXXXXX/`, one line per evaluation in `<run>/evals.jsonl`, and the best
 * snapshot (highest mean return; the paper reports the best snapshot) kept in `<run>/best/`:
 * world_action.safetensors, tokenizer.safetensors (loadable by `deno task eval --checkpoint
 * <run>/best`), its results and best.json.
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Tokenizer } from "../models/tokenizer/model.ts";
import type { WorldActionModel } from "../models/world_action/model.ts";
import { saveModule, saveWorldActionModel } from "../checkpoint/model_checkpoint.ts";
import { checkpointName, type RunDir, writeFileAtomic } from "../checkpoint/run_dir.ts";
import { PlanningAgent } from "../eval/agent.ts";
import { runGame } from "../eval/episode_runner.ts";
import { gameRecord, writeResults } from "../eval/results_writer.ts";
import { WamPlanningModel } from "../eval/wam_planning_model.ts";
import { defaultBeamWidth } from "../eval/evaluate.ts";
import type { FinetuneConfig } from "./finetune_options.ts";

/** One evaluation's outcome. */
export interface EvalPoint {
  step: number;
  meanReturn: number;
  dqnNormalized: number | null;
  returns: number[];
  seconds: number;
}

/** Runs evaluations and keeps the best snapshot. */
export class FinetuneEvaluator {
  /** Best evaluation so far (restored on resume). */
  best: EvalPoint | null = null;

  constructor(
    readonly cfg: FinetuneConfig,
    readonly run: RunDir,
    readonly model: WorldActionModel,
    readonly tok: Tokenizer,
    readonly taskId: number,
    readonly adapter: string,
    readonly log: (s: string) => void,
  ) {}

  /** `<run>/best`. */
  get bestDir(): string {
    return path.join(this.run.root, "best");
  }

  /** Play `evalEpisodes` episodes with the current weights; keep the snapshot if best. */
  async evaluate(step: number): Promise<EvalPoint> {
    const cfg = this.cfg;
    const wasTraining = this.model.training;
    const tokTraining = this.tok.training;
    // Switches the model to eval mode; f16 KV caches under --precision f16 (as `deno task eval`).
    const planner = new WamPlanningModel(this.model, { cacheDtype: cfg.precision });
    this.tok.eval();
    try {
      const beamWidth = cfg.evalBeamWidth || defaultBeamWidth(cfg.game);
      const agent = new PlanningAgent(planner, this.tok, {
        horizon: cfg.evalHorizon,
        beamWidth,
        gamma: cfg.gamma,
      });
      const game = await runGame(agent, {
        game: cfg.game,
        taskId: this.taskId,
        episodes: cfg.evalEpisodes,
        maxFrames: cfg.evalMaxFrames,
        seed: cfg.seed + step,
      });
      const dir = path.join(this.run.root, "evals", checkpointName(step));
      const doc = {
        createdAt: new Date().toISOString(),
        adapter: this.adapter,
        checkpoint: { worldAction: `${this.run.root} step ${step}`, tokenizer: "(same run)" },
        settings: {
          episodes: cfg.evalEpisodes,
          plan: agent.horizon > 0,
          horizon: agent.horizon,
          beamWidth: agent.beamWidth,
          epsilon: 0.001,
          gamma: cfg.gamma,
          maxFrames: cfg.evalMaxFrames,
          seed: cfg.seed + step,
          taskId: this.taskId,
          stickyActions: 0,
          frameSkip: 4,
          terminal: "game over",
          finetuneStep: step,
        },
        games: [gameRecord(game, this.taskId, agent.beamWidth, agent.horizon)],
      };
      const label = `JOWA fine-tuned on ${cfg.game}, step ${step}`;
      const { results } = await writeResults(dir, doc, { label, reps: 200, seed: cfg.seed });
      const g = results.games[0];
      const point: EvalPoint = {
        step,
        meanReturn: g.meanReturn,
        dqnNormalized: g.dqnNormalized,
        returns: game.returns,
        seconds: game.seconds,
      };
      fs.appendFileSync(path.join(this.run.root, "evals.jsonl"), JSON.stringify(point) + "\n");
      const better = !this.best || point.meanReturn > this.best.meanReturn;
      this.log(
        `eval step ${step}: mean return ${point.meanReturn.toFixed(2)} (DQN-normalized ` +
          `${point.dqnNormalized?.toFixed(3) ?? "n/a"})${better ? " - new best" : ""}`,
      );
      if (better) {
        this.best = point;
        await this.#saveBest(dir, point);
      }
      return point;
    } finally {
      if (wasTraining) {
        this.model.train();
        this.model.targetQ.eval(); // the target head never drops out (train() reaches it)
      }
      if (tokTraining) this.tok.train();
    }
  }

  /** Snapshot the weights and results into `<run>/best/` (built aside, then swapped in). */
  async #saveBest(evalDir: string, point: EvalPoint): Promise<void> {
    const tmp = `${this.bestDir}.${Deno.pid}.tmp`;
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp, { recursive: true });
    await saveWorldActionModel(path.join(tmp, "world_action.safetensors"), this.model);
    await saveModule(path.join(tmp, "tokenizer.safetensors"), this.tok, { config: this.tok.cfg });
    for (const f of ["results.json", "results.md"]) {
      fs.copyFileSync(path.join(evalDir, f), path.join(tmp, f));
    }
    writeFileAtomic(path.join(tmp, "best.json"), JSON.stringify(point, null, 1) + "\n");
    const old = `${this.bestDir}.old`;
    if (fs.existsSync(this.bestDir)) fs.renameSync(this.bestDir, old);
    fs.renameSync(tmp, this.bestDir);
    fs.rmSync(old, { recursive: true, force: true });
  }
}
