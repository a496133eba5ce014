import assert from "node:assert/strict";
import {
  aggregateIqm,
  aggregateMean,
  aggregateMedian,
  dqnNormalizedScore,
  humanNormalizedScore,
  mean,
  meanStd,
  median,
  normalizeScore,
  perGameMeans,
  trimMean,
} from "../eval/metrics.ts";
import { FINETUNE_GAMES, gameReference, PRETRAIN_GAMES } from "../atari/scores.ts";

function close(actual: number, expected: number, tol = 1e-12): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${actual} != ${expected} (tol ${tol})`);
}

Deno.test("human-normalized score: hand-computed values", () => {
  // Assault: random 222.4, human 742.0.
  close(humanNormalizedScore("Assault", 222.4), 0);
  close(humanNormalizedScore("Assault", 742.0), 1);
  close(humanNormalizedScore("Assault", 482.2), 0.5);
  close(humanNormalizedScore("assault", 1261.6), 2); // ROM id accepted
  // Pong: random -20.7, human 14.6: HNS(0) = 20.7 / 35.3.
  close(humanNormalizedScore("Pong", 0), 20.7 / 35.3);
  close(humanNormalizedScore("Pong", -21), -0.3 / 35.3);
  // Carnival: random 0, human 3800.
  close(humanNormalizedScore("Carnival", 1900), 0.5);
  assert.throws(() => humanNormalizedScore("NoSuchGame", 1), /NoSuchGame/);
});

Deno.test("DQN-normalized score: fine-tuning games only, error names the game", () => {
  // Pong: random -20.7, dqn 19.5.
  close(dqnNormalizedScore("Pong", 19.5), 1);
  close(dqnNormalizedScore("Pong", -0.6), 0.5);
  // Gravitar: random 173, dqn 473: (323 - 173) / 300.
  close(dqnNormalizedScore("Gravitar", 323), 0.5);
  close(dqnNormalizedScore("gravitar", 173), 0);
  assert.throws(() => dqnNormalizedScore("Assault", 1000), /DQN.*"Assault"/);
  assert.throws(() => dqnNormalizedScore("space_invaders", 1000), /"SpaceInvaders"/);
  assert.throws(() => normalizeScore(1, 2, 2), RangeError);
});

Deno.test("median and mean: numpy semantics", () => {
  assert.equal(median([3]), 3);
  assert.equal(median([4, 1]), 2.5);
  assert.equal(median([5, -1, 3]), 3);
  assert.equal(median([10, 1, 2, 7]), 4.5);
  assert.equal(mean([1, 2, 3, 6]), 3);
  assert.throws(() => median([]), RangeError);
  assert.throws(() => mean([1, NaN]), RangeError);
});

// scipy.stats.trim_mean(x, 0.25) cuts int(0.25 * n) values from each end.
const X = [3, -1, 10, 2.5, 7, 0, 4, 100];
Deno.test("trimMean(0.25) cut counts for n = 3..8, hand-computed", () => {
  // n=3: cut 0 -> plain mean.
  close(trimMean([3, -1, 10], 0.25), 4);
  // n=4: sorted -1 2.5 3 10, cut 1 -> (2.5 + 3) / 2.
  close(trimMean(X.slice(0, 4), 0.25), 2.75);
  // n=5: sorted -1 2.5 3 7 10, cut floor(1.25) = 1 -> 12.5 / 3.
  close(trimMean(X.slice(0, 5), 0.25), 12.5 / 3);
  // n=6: sorted -1 0 2.5 3 7 10, cut 1 -> 12.5 / 4.
  close(trimMean(X.slice(0, 6), 0.25), 3.125);
  // n=7: sorted -1 0 2.5 3 4 7 10, cut floor(1.75) = 1 (not 2) -> 16.5 / 5.
  close(trimMean(X.slice(0, 7), 0.25), 3.3);
  // n=8: sorted -1 0 2.5 3 4 7 10 100, cut 2 -> 16.5 / 4.
  close(trimMean(X, 0.25), 4.125);
  close(trimMean(X, 0), mean(X));
  close(trimMean([1, 2, 30], 0.5), 2); // odd n, proportion 0.5 -> median
  assert.throws(() => trimMean([1, 2], 0.5), RangeError);
  assert.throws(() => trimMean([1, 2], 0.6), RangeError);
});

Deno.test("aggregates follow rliable: mean/median of game means, IQM of all runs", () => {
  // Two games (ragged): game means 2 and 11.
  const scores = [[1, 3], [10, 12, 11]];
  assert.deepStrictEqual(perGameMeans(scores), [2, 11]);
  close(aggregateMean(scores), 6.5);
  close(aggregateMedian(scores), 6.5);
  // Flattened 1 3 10 12 11 (n=5, cut 1): (3 + 10 + 11) / 3 = 8.
  close(aggregateIqm(scores), 8);
  // 3 games x 4 runs (n=12, cut 3): sorted 0..11 -> mean of 3..8 = 5.5.
  const grid = [[0, 5, 9, 2], [11, 4, 7, 1], [3, 6, 10, 8]];
  close(aggregateIqm(grid), 5.5);
  // Game means 4, 5.75, 6.75 -> median 5.75, mean 5.5.
  close(aggregateMedian(grid), 5.75);
  close(aggregateMean(grid), 5.5);
  assert.throws(() => aggregateIqm([]), RangeError);
  assert.throws(() => aggregateMean([[1], []]), /game 1/);
});

Deno.test("meanStd: population by default, sample with ddof 1", () => {
  const r = meanStd([2, 4, 4, 4, 5, 5, 7, 9]);
  assert.deepStrictEqual(r, { mean: 5, std: 2, n: 8, ddof: 0 });
  const s = meanStd([1, 2, 3, 4], 1);
  close(s.std, Math.sqrt(5 / 3));
  close(meanStd([1, 2, 3, 4]).std, Math.sqrt(1.25));
  assert.equal(meanStd([7]).std, 0);
  assert.throws(() => meanStd([7], 1), RangeError);
});

const round3 = (x: number) => Math.round(x * 1000) / 1000;

Deno.test("paper aggregates from its per-game JOWA-150M returns (T2, T3)", () => {
  const hns = PRETRAIN_GAMES.map((g) => [humanNormalizedScore(g, gameReference(g).jowa150m)]);
  assert.equal(hns.length, 15);
  assert.equal(round3(aggregateMedian(hns)), 0.456);
  assert.equal(round3(aggregateIqm(hns)), 0.789);
  // Fine-tuning: IQM DQN-normalized 0.647 on the 5 held-out games.
  const dqn = FINETUNE_GAMES.map((g) => [dqnNormalizedScore(g, gameReference(g).jowa150m)]);
  assert.equal(round3(aggregateIqm(dqn)), 0.647);
});
