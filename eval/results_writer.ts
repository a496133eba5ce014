/**
 * Writes an evaluation's outputs: `results.json` (settings, raw per-episode returns and the
 * computed results) and `results.md` (the table beside the paper's JOWA-150M figures).
 *
 * @module
 */
import * as path from "node:path";
import { computeResults, type EvaluationResults, renderResultsMarkdown } from "./results_table.ts";
import type { GameRun } from "./episode_runner.ts";

/** Per-game raw data kept in results.json. */
export interface GameRecord {
  game: string;
  taskId: number;
  beamWidth: number;
  horizon: number;
  returns: number[];
  lengths: number[];
  truncated: boolean[];
  agentSteps: number;
  seconds: number;
  agentStepsPerSecond: number;
}

/** The whole results.json document. */
export interface ResultsDocument {
  createdAt: string;
  adapter: string;
  checkpoint: { worldAction: string; tokenizer: string };
  settings: Record<string, unknown>;
  games: GameRecord[];
  results: EvaluationResults;
}

/** The raw record of a finished game run. */
export function gameRecord(
  run: GameRun,
  taskId: number,
  beamWidth: number,
  horizon: number,
): GameRecord {
  return {
    game: run.game,
    taskId,
    beamWidth,
    horizon,
    returns: run.returns,
    lengths: run.lengths,
    truncated: run.truncated,
    agentSteps: run.agentSteps,
    seconds: run.seconds,
    agentStepsPerSecond: run.agentSteps / Math.max(run.seconds, 1e-9),
  };
}

/** Compute the results and write results.json and results.md into `dir`. */
export async function writeResults(
  dir: string,
  doc: Omit<ResultsDocument, "results">,
  opts: { label: string; reps: number; seed: number },
): Promise<{ json: string; markdown: string; results: EvaluationResults }> {
  const results = computeResults(
    doc.games.map((g) => ({ game: g.game, returns: g.returns })),
    { label: opts.label, reps: opts.reps, seed: opts.seed },
  );
  await Deno.mkdir(dir, { recursive: true });
  const json = path.join(dir, "results.json");
  const markdown = path.join(dir, "results.md");
  await Deno.writeTextFile(json, JSON.stringify({ ...doc, results }, null, 2) + "\n");
  const settings = Object.entries(doc.settings).map(([k, v]) => `${k}=${JSON.stringify(v)}`);
  const md = renderResultsMarkdown(results) +
    `\nCheckpoint: \`${doc.checkpoint.worldAction}\`. Adapter: ${doc.adapter}. ` +
    `Settings: ${settings.join(", ")}.\n`;
  await Deno.writeTextFile(markdown, md);
  return { json, markdown, results };
}
