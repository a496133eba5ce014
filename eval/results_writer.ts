/**
 * Writes an evaluation's outputs: `results.json` (settings, raw per-episode returns and the
 * computed results) and `results.md` (the table beside the paper's JOWA-150M figures).
 *
 * @module
 */
import * as path from "node:path";
import {
  type AuthorsReference,
  computeResults,
  type EvaluationResults,
  renderResultsMarkdown,
} from "./results_table.ts";
import type { GameRun } from "./episode_runner.ts";
import { fsReason } from "../util/writable.ts";

/** Per-game raw data kept in results.json. */
export interface GameRecord {
  game: string;
  taskId: number;
  beamWidth: number;
  horizon: number;
  /** Observations per planning window actually used: min(L - H, context). */
  window?: number;
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

/** Where {@link writeResults} put the files. */
export interface WrittenResults {
  json: string;
  markdown: string;
  results: EvaluationResults;
  /** Set when `dir` could not be written: why (the files are then in a fallback directory). */
  fallbackReason?: string;
}

/**
 * A directory for outputs that could not go where asked: a new temporary directory, else a
 * new directory in the current one.
 */
export async function fallbackDir(): Promise<string> {
  try {
    return await Deno.makeTempDir({ prefix: "jowa-eval-results-" });
  } catch {
    const d = path.resolve(`jowa-eval-results-${Date.now()}`);
    await Deno.mkdir(d, { recursive: true });
    return d;
  }
}

/**
 * Compute the results and write results.json and results.md into `dir`. When `dir` cannot be
 * written (it vanished, became a file, the disk went read-only) the results of the whole
 * evaluation must not be lost: they go to {@link fallbackDir} and `fallbackReason` says why.
 */
export async function writeResults(
  dir: string,
  doc: Omit<ResultsDocument, "results">,
  opts: { label: string; reps: number; seed: number; authors?: AuthorsReference },
): Promise<WrittenResults> {
  const results = computeResults(
    doc.games.map((g) => ({ game: g.game, returns: g.returns })),
    { label: opts.label, reps: opts.reps, seed: opts.seed, authors: opts.authors },
  );
  try {
    return { ...(await writeFiles(dir, doc, results)), results };
  } catch (e) {
    const fallbackReason = `${dir}: ${fsReason(e)}`;
    return { ...(await writeFiles(await fallbackDir(), doc, results)), results, fallbackReason };
  }
}

async function writeFiles(
  dir: string,
  doc: Omit<ResultsDocument, "results">,
  results: EvaluationResults,
): Promise<{ json: string; markdown: string }> {
  await Deno.mkdir(dir, { recursive: true });
  const json = path.join(dir, "results.json");
  const markdown = path.join(dir, "results.md");
  await Deno.writeTextFile(json, JSON.stringify({ ...doc, results }, null, 2) + "\n");
  const settings = Object.entries(doc.settings).map(([k, v]) => `${k}=${JSON.stringify(v)}`);
  const md = renderResultsMarkdown(results) +
    `\nCheckpoint: \`${doc.checkpoint.worldAction}\`. Adapter: ${doc.adapter}. ` +
    `Settings: ${settings.join(", ")}.\n`;
  await Deno.writeTextFile(markdown, md);
  return { json, markdown };
}
