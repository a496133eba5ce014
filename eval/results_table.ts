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
  stratifiedBootstrapCI,
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
import { canonicalGameName, gameReference, type GameSplit } from "../atari/mod.ts";

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
  /** The authors' published episode returns to compare with (the public protocol). */
  authors?: AuthorsReference;
}

/** The authors' published per-episode returns of one model (public_eval_settings.json). */
export interface AuthorsReference {
  /** Model name, e.g. "JOWA-150M". */
  model: string;
  /** Episode returns per canonical game name; games without an entry are not compared. */
  returns: Readonly<Record<string, readonly number[]>>;
}

/** Our per-game mean against the authors' published mean for the same game. */
export interface AuthorsComparison {
  /** The authors' mean return. */
  mean: number;
  /** Their number of episodes. */
  episodes: number;
  /**
   * Our mean minus theirs with its bootstrap CI: a stratified bootstrap of the two-sample
   * matrix [our returns, their returns] (each resampled within itself, bootstrap.ts).
   */
  difference: IntervalEstimate;
  /** Whether 0 lies in the CI: the difference is within what episode noise explains. */
  withinCI: boolean;
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
  /** Against the authors' published returns (public protocol); absent without them. */
  authors?: AuthorsComparison;
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
  /** The model whose published returns the games are compared with, if any. */
  authorsModel?: string;
}

const meanOf = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/**
 * Our mean return minus the authors' with a stratified-bootstrap CI (the two samples are the
 * strata, each resampled with replacement within itself), and whether the CI contains 0.
 */
export function compareWithAuthors(
  ours: readonly number[],
  theirs: readonly number[],
  bootstrap: BootstrapOptions = {},
): AuthorsComparison {
  if (ours.length === 0 || theirs.length === 0) {
    throw new RangeError("compareWithAuthors: both samples need returns");
  }
  const difference = stratifiedBootstrapCI(
    [ours, theirs],
    (s) => meanOf(s[0]) - meanOf(s[1]),
    bootstrap,
  );
  return {
    mean: meanOf(theirs),
    episodes: theirs.length,
    difference,
    withinCI: difference.lower <= 0 && 0 <= difference.upper,
  };
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
    const theirs = options.authors?.returns[game];
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
      ...(theirs ? { authors: compareWithAuthors(e.returns, theirs, bootstrap) } : {}),
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
    ...(options.authors ? { authorsModel: options.authors.model } : {}),
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
  const pct = `${formatNumber(100 * results.bootstrap.confidence, 0)}%`;
  const who = results.authorsModel ? escapeCell(results.authorsModel) : null;
  lines.push(
    "| Game | Episodes | Return (mean ± std) | HNS | DQN-norm. | JOWA-150M paper return | Paper HNS |" +
      (who ? ` ${who} public mean | Ours − theirs [${pct} CI] | Within CI |` : ""),
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |" + (who ? " ---: | ---: | :---: |" : ""),
  );
  for (const g of results.games) {
    const a = g.authors;
    const authorCells = !who
      ? ""
      : a
      ? ` ${formatNumber(a.mean, 1)} | ${formatInterval(a.difference, 1)} | ${
        a.withinCI ? "yes" : "no"
      } |`
      : " — | — | — |";
    lines.push(
      `| ${g.game} | ${g.episodes} | ${formatNumber(g.meanReturn, 1)} ± ${
        formatNumber(g.stdReturn, 1)
      } | ${formatNumber(g.hns, 3)} | ${formatNumber(g.dqnNormalized, 3)} | ${
        formatNumber(g.paperReturn, 1)
      } | ${formatNumber(g.paperHns, 3)} |${authorCells}`,
    );
  }
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
  if (who) {
    const n = results.games.filter((g) => g.authors).length;
    const within = results.games.filter((g) => g.authors?.withinCI).length;
    lines.push(
      "",
      `${who} public mean: the authors' published episode returns with their per-game settings ` +
        "(public_eval_settings.json; their ROMs: atari-py 0.2.5). Ours − theirs: difference of " +
        `mean returns with a ${pct} stratified bootstrap CI (each sample resampled within ` +
        `itself); "yes" when the CI contains 0. ${within} of ${n} games within the CI.`,
    );
  }
  return lines.join("\n") + "\n";
}
