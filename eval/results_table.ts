/**
 * Evaluation results: per-game return statistics and normalized scores beside the paper's
 * JOWA-150M numbers, aggregate metrics with stratified-bootstrap confidence intervals, a
 * JSON-serializable results object and a markdown rendering of it.
 *
 * Each evaluation episode of a game is treated as one "run" of rliable's runs x games matrix:
 * mean and median aggregate the per-game mean scores, IQM trims the flattened episodes x games
 * scores, and the bootstrap resamples episodes within each game. Because the paper reports one
 * score per game, "IQM of game means" (IQM over the per-game mean scores, same bootstrap) is
 * also given; it is the figure to compare with the paper's IQM.
 *
 * @module
 */

import {
  type BootstrapOptions,
  type BootstrapSettings,
  type IntervalEstimate,
  resolveBootstrapOptions,
  type Statistic,
  stratifiedBootstrapCIs,
} from "./bootstrap.ts";
import {
  aggregateIqm,
  aggregateMean,
  aggregateMedian,
  dqnNormalizedScore,
  humanNormalizedScore,
  meanStd,
  perGameMeans,
  trimMean,
} from "./metrics.ts";
import { canonicalGameName, gameReference, type GameSplit } from "../atari/scores.ts";

/** Evaluation returns of one game. */
export interface GameEvaluation {
  /** Game name ("SpaceInvaders") or ale-py ROM id ("space_invaders"). */
  game: string;
  /** Undiscounted return of each evaluation episode. */
  returns: readonly number[];
}

/** Options of {@linkcode computeResults}. */
export interface ResultsOptions extends BootstrapOptions {
  /** Heading of the rendered table; default "JOWA evaluation". */
  label?: string;
  /** Standard deviation of returns: 0 = population (default), 1 = sample. */
  ddof?: 0 | 1;
}

/** Results of one game. */
export interface GameResult {
  /** Canonical game name. */
  game: string;
  /** Pretraining or fine-tuning game. */
  split: GameSplit;
  /** Number of evaluation episodes. */
  episodes: number;
  /** Mean episode return. */
  meanReturn: number;
  /** Standard deviation of episode returns (population or sample, see `std`). */
  stdReturn: number;
  /** Human-normalized score of the mean return. */
  hns: number;
  /** DQN-normalized score of the mean return; null where the game has no DQN reference. */
  dqnNormalized: number | null;
  /** JOWA-150M return reported in the paper. */
  paperReturn: number;
  /** Human-normalized score of the paper's return. */
  paperHns: number;
  /** DQN-normalized score of the paper's return; null where undefined. */
  paperDqnNormalized: number | null;
}

/** Aggregate metrics of one normalization with their confidence intervals. */
export interface AggregateEstimates {
  /** Mean over games of the per-game mean score (rliable `aggregate_mean`). */
  mean: IntervalEstimate;
  /** Median over games of the per-game mean score (rliable `aggregate_median`). */
  median: IntervalEstimate;
  /** IQM of the flattened episodes x games scores (rliable `aggregate_iqm`). */
  iqm: IntervalEstimate;
  /** IQM of the per-game mean scores (the paper's unit: one score per game). */
  iqmOfGameMeans: IntervalEstimate;
}

/** The paper's aggregates, computed from its per-game JOWA-150M returns (one per game). */
export interface PaperAggregates {
  /** Mean over games. */
  mean: number;
  /** Median over games. */
  median: number;
  /** 25% trimmed mean over games. */
  iqm: number;
}

/** Full evaluation results; plain data, safe to `JSON.stringify`. */
export interface EvaluationResults {
  /** Heading of the results. */
  label: string;
  /** Per-game results, in input order. */
  games: GameResult[];
  /** Aggregates of human-normalized scores. */
  hns: AggregateEstimates;
  /** Aggregates of DQN-normalized scores; null unless every game has a DQN reference. */
  dqnNormalized: AggregateEstimates | null;
  /** The paper's aggregates over the same games. */
  paper: { hns: PaperAggregates; dqnNormalized: PaperAggregates | null };
  /** Bootstrap settings used for the confidence intervals. */
  bootstrap: BootstrapSettings;
  /** Kind of standard deviation reported for returns. */
  std: "population" | "sample";
}

function aggregateStatistics(): Record<keyof AggregateEstimates, Statistic> {
  return {
    mean: aggregateMean,
    median: aggregateMedian,
    iqm: aggregateIqm,
    iqmOfGameMeans: (scores) => trimMean(perGameMeans(scores), 0.25),
  };
}

function paperAggregates(values: number[]): PaperAggregates {
  const asRuns = values.map((v) => [v]);
  return {
    mean: aggregateMean(asRuns),
    median: aggregateMedian(asRuns),
    iqm: aggregateIqm(asRuns),
  };
}

/**
 * Computes per-game statistics, normalized scores and aggregate metrics with stratified
 * bootstrap CIs. Throws on unknown or repeated games and on games without returns.
 */
export function computeResults(
  evaluations: readonly GameEvaluation[],
  options: ResultsOptions = {},
): EvaluationResults {
  if (evaluations.length === 0) throw new RangeError("computeResults: no games");
  const bootstrap = resolveBootstrapOptions(options);
  const ddof = options.ddof ?? 0;
  const seen = new Set<string>();
  const names = evaluations.map((e) => {
    const name = canonicalGameName(e.game);
    if (seen.has(name)) throw new Error(`computeResults: game "${name}" appears twice`);
    if (e.returns.length === 0) {
      throw new RangeError(`computeResults: game "${name}" has no returns`);
    }
    seen.add(name);
    return name;
  });
  const withDqn = names.every((g) => gameReference(g).dqn !== undefined);

  const games: GameResult[] = evaluations.map((e, i) => {
    const game = names[i];
    const ref = gameReference(game);
    const stats = meanStd(e.returns, ddof);
    const dqnOk = ref.dqn !== undefined;
    return {
      game,
      split: ref.split,
      episodes: stats.n,
      meanReturn: stats.mean,
      stdReturn: stats.std,
      hns: humanNormalizedScore(game, stats.mean),
      dqnNormalized: dqnOk ? dqnNormalizedScore(game, stats.mean) : null,
      paperReturn: ref.jowa150m,
      paperHns: humanNormalizedScore(game, ref.jowa150m),
      paperDqnNormalized: dqnOk ? dqnNormalizedScore(game, ref.jowa150m) : null,
    };
  });

  const hnsScores = evaluations.map((e, i) =>
    e.returns.map((r) => humanNormalizedScore(names[i], r))
  );
  const hns = stratifiedBootstrapCIs(hnsScores, aggregateStatistics(), bootstrap);
  let dqnNormalized: AggregateEstimates | null = null;
  if (withDqn) {
    const dqnScores = evaluations.map((e, i) =>
      e.returns.map((r) => dqnNormalizedScore(names[i], r))
    );
    dqnNormalized = stratifiedBootstrapCIs(dqnScores, aggregateStatistics(), bootstrap);
  }
  return {
    label: options.label ?? "JOWA evaluation",
    games,
    hns,
    dqnNormalized,
    paper: {
      hns: paperAggregates(games.map((g) => g.paperHns)),
      dqnNormalized: withDqn
        ? paperAggregates(games.map((g) => g.paperDqnNormalized as number))
        : null,
    },
    bootstrap,
    std: ddof === 0 ? "population" : "sample",
  };
}

/** Fixed-point formatting without "-0.000"; null renders as an em dash. */
export function formatNumber(x: number | null, digits: number): string {
  if (x === null) return "—";
  const s = x.toFixed(digits);
  return /^-0(\.0*)?$/.test(s) ? s.slice(1) : s;
}

function formatInterval(e: IntervalEstimate | undefined, digits: number): string {
  if (e === undefined) return "—";
  const f = (x: number) => formatNumber(x, digits);
  return `${f(e.point)} [${f(e.lower)}, ${f(e.upper)}]`;
}

function escapeCell(text: string): string {
  return text.replaceAll("|", "\\|");
}

/** Renders results as markdown: a per-game table, an aggregate table and a footnote. */
export function renderResultsMarkdown(results: EvaluationResults): string {
  const lines: string[] = [];
  lines.push(`### ${escapeCell(results.label)}`, "");
  lines.push(
    "| Game | Episodes | Return (mean ± std) | HNS | DQN-norm. | JOWA-150M paper return | Paper HNS |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  );
  for (const g of results.games) {
    lines.push(
      `| ${g.game} | ${g.episodes} | ${formatNumber(g.meanReturn, 1)} ± ${
        formatNumber(g.stdReturn, 1)
      } | ${formatNumber(g.hns, 3)} | ${formatNumber(g.dqnNormalized, 3)} | ${
        formatNumber(g.paperReturn, 1)
      } | ${formatNumber(g.paperHns, 3)} |`,
    );
  }
  const pct = `${formatNumber(100 * results.bootstrap.confidence, 0)}%`;
  lines.push(
    "",
    `| Aggregate (${results.games.length} games) | HNS [${pct} CI] | Paper HNS | DQN-norm. [${pct} CI] | Paper DQN-norm. |`,
    "| --- | ---: | ---: | ---: | ---: |",
  );
  const rows: [string, keyof AggregateEstimates, keyof PaperAggregates][] = [
    ["Mean", "mean", "mean"],
    ["Median", "median", "median"],
    ["IQM (episodes × games)", "iqm", "iqm"],
    ["IQM (game means)", "iqmOfGameMeans", "iqm"],
  ];
  const { hns, dqnNormalized, paper } = results;
  for (const [title, key, paperKey] of rows) {
    lines.push(
      `| ${title} | ${formatInterval(hns[key], 3)} | ${formatNumber(paper.hns[paperKey], 3)} | ${
        formatInterval(dqnNormalized?.[key], 3)
      } | ${formatNumber(paper.dqnNormalized?.[paperKey] ?? null, 3)} |`,
    );
  }
  const b = results.bootstrap;
  lines.push(
    "",
    `Std of returns: ${results.std} (ddof ${results.std === "population" ? 0 : 1}). ` +
      `CIs: stratified bootstrap over episodes within each game${
        b.taskBootstrap ? " and over games" : ""
      }, ${b.method} method, ${b.reps} replicates, seed ${b.seed}. ` +
      "Paper aggregates use the paper's per-game JOWA-150M returns for the same games " +
      "(one score per game, so its IQM compares with the game-means row).",
  );
  return lines.join("\n") + "\n";
}
